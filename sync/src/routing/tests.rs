//! Routing tests: small topologies by hand, and properties over random connected ones.

use super::*;
use crate::provenance::{Hop, Path, encode_origin};
use proptest::prelude::*;

fn topo(ids: &[&str], links: &[[usize; 2]]) -> Topology {
    Topology::new(ids.iter().map(|s| s.to_string()).collect(), links)
}

#[test]
fn two_clusters_never_send_back() {
    let t = topo(&["a", "b"], &[[0, 1]]);
    assert_eq!(t.origins_forwarded(0, 1), vec![0]);
    assert_eq!(t.origins_forwarded(1, 0), vec![1]);
    let ab = FlowRouter::new(&t, 0, 1);
    let mut v = Vec::new();
    encode_origin(
        Hop {
            cluster: b"b",
            partition: 0,
            offset: 5,
        },
        &mut v,
    )
    .unwrap();
    assert_eq!(
        ab.decide(Some(&Path::decode(&v).unwrap())),
        Decision::NotInTree
    );
    assert_eq!(ab.decide(None), Decision::Forward);
}

#[test]
fn triangle_ties_break_by_id() {
    // a-b, b-c, a-c: origin a reaches b and c directly; nothing via b→c or c→b.
    let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2], [0, 2]]);
    assert_eq!(t.origins_forwarded(1, 2), vec![1]);
    // square a-b-d-c-a: d is two steps from a, via b or c; b has the smaller id.
    let sq = topo(&["a", "b", "c", "d"], &[[0, 1], [1, 3], [3, 2], [2, 0]]);
    assert_eq!(sq.tree(0)[3], Some(1));
    assert_eq!(sq.origins_forwarded(1, 3), vec![0, 1]);
    assert_eq!(sq.origins_forwarded(2, 3), vec![2]);
}

#[test]
fn chain_relays_through_the_middle() {
    let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
    assert_eq!(t.origins_forwarded(1, 2), vec![0, 1]);
    assert_eq!(t.origins_forwarded(1, 0), vec![1, 2]);
    assert_eq!(t.components().len(), 1);
    assert_eq!(topo(&["a", "b", "c"], &[[0, 1]]).components().len(), 2);
}

#[test]
fn unknown_origin_routes_by_first_known_hop() {
    let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
    let mut v = Vec::new();
    encode_origin(
        Hop {
            cluster: b"elsewhere",
            partition: 0,
            offset: 1,
        },
        &mut v,
    )
    .unwrap();
    let p = Path::decode(&v).unwrap();
    // Read on a with a foreign origin: a is treated as its origin.
    assert_eq!(
        FlowRouter::new(&t, 0, 1).decide(Some(&p)),
        Decision::Forward
    );
    let mut w = Vec::new();
    p.extend_into(
        Hop {
            cluster: b"a",
            partition: 0,
            offset: 9,
        },
        &mut w,
    )
    .unwrap();
    let p2 = Path::decode(&w).unwrap();
    assert_eq!(
        FlowRouter::new(&t, 1, 2).decide(Some(&p2)),
        Decision::Forward
    );
    assert_eq!(
        FlowRouter::new(&t, 1, 0).decide(Some(&p2)),
        Decision::NotInTree
    );
}

#[test]
fn hop_guard_stops_a_record_already_on_the_target() {
    // Two nodes whose configs disagree: the guard still stops the loop.
    let t = topo(&["a", "b", "c"], &[[0, 1], [1, 2]]);
    let mut v = Vec::new();
    encode_origin(
        Hop {
            cluster: b"zz",
            partition: 0,
            offset: 1,
        },
        &mut v,
    )
    .unwrap();
    let mut w = Vec::new();
    Path::decode(&v)
        .unwrap()
        .extend_into(
            Hop {
                cluster: b"c",
                partition: 0,
                offset: 2,
            },
            &mut w,
        )
        .unwrap();
    // Origin c (first known hop); flow b→c is not in c's tree: not forwarded.
    assert_eq!(
        FlowRouter::new(&t, 1, 2).decide(Some(&Path::decode(&w).unwrap())),
        Decision::NotInTree
    );
    let mut x = Vec::new();
    encode_origin(
        Hop {
            cluster: b"a",
            partition: 0,
            offset: 1,
        },
        &mut x,
    )
    .unwrap();
    let mut y = Vec::new();
    Path::decode(&x)
        .unwrap()
        .extend_into(
            Hop {
                cluster: b"c",
                partition: 0,
                offset: 2,
            },
            &mut y,
        )
        .unwrap();
    // Origin a, b→c is in a's tree, but c is on the path already.
    assert_eq!(
        FlowRouter::new(&t, 1, 2).decide(Some(&Path::decode(&y).unwrap())),
        Decision::LoopStopped
    );
}

/// A random connected graph over `n` clusters: a random spanning tree plus random
/// extra edges.
pub(super) fn graph(n: usize) -> impl Strategy<Value = Vec<[usize; 2]>> {
    let parents = proptest::collection::vec(any::<prop::sample::Index>(), n - 1);
    let extra = proptest::collection::vec((0..n, 0..n), 0..(n * 2));
    (parents, extra).prop_map(move |(parents, extra)| {
        let mut links: Vec<[usize; 2]> = parents
            .iter()
            .enumerate()
            .map(|(i, ix)| [i + 1, ix.index(i + 1)])
            .collect();
        links.extend(
            extra
                .into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| [a, b]),
        );
        links
    })
}

/// Random connected graph of 2 to 8 clusters, and an origin among them.
fn connected_graph() -> impl Strategy<Value = (usize, Vec<[usize; 2]>, usize)> {
    (2usize..=8).prop_flat_map(|n| (Just(n), graph(n), 0..n))
}

/// Carries one record of `topic` produced on `origin` through every flow whose link
/// selects the topic, each deciding with the engine's router, and returns how many
/// copies each cluster ends with. Fails on a loop-guard stop or a runaway.
fn simulate(routes: &Routes, topic: &str, origin: usize) -> Result<Vec<u32>, TestCaseError> {
    spread(routes, topic, vec![(origin, None)])
}

/// Carries `copies` (a cluster holding a copy, and its provenance: `None` for the origin
/// copy) on through every flow whose link selects `topic`, as [`simulate`] does, and
/// returns how many copies each cluster ends with.
fn spread(
    routes: &Routes,
    topic: &str,
    copies: Vec<(usize, Option<Vec<u8>>)>,
) -> Result<Vec<u32>, TestCaseError> {
    let t = routes.topology(topic);
    let ids = routes.ids();
    let mut received = vec![0u32; ids.len()];
    for (at, _) in &copies {
        received[*at] += 1;
    }
    let mut queue: VecDeque<(usize, Option<Vec<u8>>)> = copies.into_iter().collect();
    let mut steps = 0;
    while let Some((at, path)) = queue.pop_front() {
        for &next in &t.adj[at] {
            steps += 1;
            prop_assert!(steps < 10_000, "propagation does not end");
            let decoded = path.as_deref().map(|p| Path::decode(p).unwrap());
            match routes.router(topic, at, next).decide(decoded.as_ref()) {
                Decision::Forward => {
                    let hop = Hop {
                        cluster: ids[at].as_bytes(),
                        partition: 0,
                        offset: steps as i64,
                    };
                    let mut out = Vec::new();
                    match &decoded {
                        Some(p) => p.extend_into(hop, &mut out).unwrap(),
                        None => encode_origin(hop, &mut out).unwrap(),
                    }
                    received[next] += 1;
                    queue.push_back((next, Some(out)));
                }
                Decision::NotInTree => {}
                Decision::LoopStopped => {
                    prop_assert!(false, "guard needed on {} -> {}", ids[at], ids[next])
                }
                d @ (Decision::Deferred | Decision::AlreadyHeld) => {
                    prop_assert!(false, "one router alone decided {d:?}")
                }
            }
        }
    }
    Ok(received)
}

fn all_topics() -> TopicSelection {
    TopicSelection::matching(".*").unwrap()
}

#[test]
fn a_link_that_skips_a_topic_is_routed_around() {
    // Triangle a-b, b-c, a-c where a-c selects only payments (issue 10): orders of a
    // reach c through b, payments of a go straight to c.
    let ids = ["a", "b", "c"].map(String::from).to_vec();
    let payments = TopicSelection::matching("payments").unwrap();
    let routes = Routes::new(
        ids,
        vec![
            ([0, 1], all_topics()),
            ([1, 2], all_topics()),
            ([0, 2], payments),
        ],
    );
    assert_eq!(routes.topology("orders").tree(0)[2], Some(1));
    assert_eq!(routes.topology("payments").tree(0)[2], Some(0));
    assert_eq!(
        routes.topology("orders").origins_forwarded(1, 2),
        vec![0, 1]
    );
    assert_eq!(routes.topology("payments").origins_forwarded(1, 2), vec![1]);
    assert_eq!(simulate(&routes, "orders", 0).unwrap(), vec![1, 1, 1]);
    assert_eq!(simulate(&routes, "payments", 0).unwrap(), vec![1, 1, 1]);
    assert_eq!(routes.parts("orders"), vec![vec![0, 1, 2]]);
}

#[test]
fn a_topic_whose_links_do_not_meet_is_replicated_within_each_part() {
    // a-b and c-d select events, the bridge b-c does not.
    let ids = ["a", "b", "c", "d"].map(String::from).to_vec();
    let events = TopicSelection::matching("events|other").unwrap();
    let bridge = TopicSelection::matching("other").unwrap();
    let routes = Routes::new(
        ids,
        vec![([0, 1], events.clone()), ([1, 2], bridge), ([2, 3], events)],
    );
    assert_eq!(routes.parts("events"), vec![vec![0, 1], vec![2, 3]]);
    assert_eq!(routes.parts("other"), vec![vec![0, 1, 2, 3]]);
    assert!(routes.parts("unselected").is_empty());
    assert_eq!(simulate(&routes, "events", 0).unwrap(), vec![1, 1, 0, 0]);
    assert_eq!(simulate(&routes, "events", 3).unwrap(), vec![0, 0, 1, 1]);
    // A record of a that reached c over a link since changed: c counts as its origin
    // within its part, so d receives it once and nothing goes back.
    let mut v = Vec::new();
    encode_origin(
        Hop {
            cluster: b"a",
            partition: 0,
            offset: 1,
        },
        &mut v,
    )
    .unwrap();
    let p = Path::decode(&v).unwrap();
    assert_eq!(
        routes.router("events", 2, 3).decide(Some(&p)),
        Decision::Forward
    );
}

/// The provenance of a record `origin` wrote, as it arrives from there.
fn sent_by(origin: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let hop = Hop {
        cluster: origin.as_bytes(),
        partition: 0,
        offset: 7,
    };
    encode_origin(hop, &mut out).unwrap();
    out
}

/// A ring a–b–c that had d, linked to a and c, until d was removed: the copies of d's
/// record that a and c received from d reach b once, by d's tree (b's parent is a, the
/// smaller id), not once from each.
#[test]
fn a_removed_clusters_records_keep_its_tree() {
    let ids: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
    let ring = vec![
        ([0, 1], all_topics()),
        ([1, 2], all_topics()),
        ([0, 2], all_topics()),
    ];
    let copies = || vec![(0, Some(sent_by("d"))), (2, Some(sent_by("d")))];
    let forgotten = Routes::new(ids.clone(), ring.clone());
    assert_eq!(
        spread(&forgotten, "t", copies()).unwrap(),
        [2, 2, 2],
        "without d known, a and c each take d's record as their own"
    );
    let d = Former {
        id: "d".into(),
        links: vec![("a".into(), all_topics()), ("c".into(), all_topics())],
    };
    let known = Routes::new(ids.clone(), ring.clone()).with_former(vec![d.clone()]);
    assert_eq!(spread(&known, "t", copies()).unwrap(), [1, 1, 1]);
    assert_eq!(
        known
            .router("t", 0, 1)
            .decide(Some(&Path::decode(&sent_by("d")).unwrap())),
        Decision::Forward
    );
    assert_eq!(
        known
            .router("t", 2, 1)
            .decide(Some(&Path::decode(&sent_by("d")).unwrap())),
        Decision::NotInTree
    );
    // d's link to c replicated other topics only: c got d's record of `t` through a.
    let d_to_a = Former {
        id: "d".into(),
        links: vec![
            ("a".into(), all_topics()),
            ("c".into(), TopicSelection::matching("other").unwrap()),
        ],
    };
    let known = Routes::new(ids.clone(), ring.clone()).with_former(vec![d_to_a]);
    assert_eq!(
        spread(&known, "t", vec![(0, Some(sent_by("d")))]).unwrap(),
        [1, 1, 1]
    );
    // d back in the mesh is routed as any cluster.
    let back: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
    let routes = Routes::new(back, ring).with_former(vec![d]);
    assert!(routes.former.is_empty());
}

proptest! {
    /// A cluster removed from a random connected mesh, with a random non-empty set of
    /// links it had: the copies of its record that its former neighbours hold reach
    /// every cluster exactly once.
    #[test]
    fn a_removed_clusters_records_reach_every_cluster_once((n, links, _) in connected_graph(),
                                                           peers in proptest::collection::btree_set(0usize..8, 1..4)) {
        let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let peers: Vec<usize> = peers.into_iter().filter(|&p| p < n).collect();
        prop_assume!(!peers.is_empty());
        let former = Former {
            id: "gone".into(),
            links: peers.iter().map(|&p| (format!("c{p}"), all_topics())).collect(),
        };
        let routes = Routes::new(ids, links.iter().map(|&l| (l, all_topics())).collect())
            .with_former(vec![former]);
        let copies = peers.iter().map(|&p| (p, Some(sent_by("gone")))).collect();
        let received = spread(&routes, "t", copies)?;
        prop_assert!(received.iter().all(|&c| c == 1), "received {:?}", received);
    }

    /// Topic settings: in a random connected mesh with a random preferred owner (or
    /// none) and random links that copy no settings (quiet), every cluster the other
    /// links connect to the owner takes them from exactly one neighbour (none across a
    /// quiet link), every flow that copies names the same owner, following the copies
    /// back reaches the owner, and no other cluster takes them.
    #[test]
    fn every_cluster_takes_topic_settings_from_one_neighbour((n, links, _) in connected_graph(),
                                                              preferred in proptest::option::of(0usize..9),
                                                              quiet_mask in proptest::collection::vec(proptest::bool::weighted(0.25), 40)) {
        let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let quiet: Vec<[usize; 2]> = links.iter().zip(&quiet_mask).filter(|(_, q)| **q).map(|(l, _)| *l).collect();
        let is_quiet = |a: usize, b: usize| quiet.contains(&[a, b]) || quiet.contains(&[b, a]);
        let routes = Routes::new(ids.clone(), links.iter().map(|&l| (l, all_topics())).collect())
            .with_quiet_links(quiet.clone());
        // An id not in the mesh (c8 when n < 9) falls back to the first cluster.
        let preferred = preferred.map(|p| format!("c{p}"));
        let owner = preferred.clone().filter(|p| ids.contains(p)).unwrap_or_else(|| ids[0].clone());
        let o = routes.index(&owner).unwrap();
        let loud: Vec<[usize; 2]> = links.iter().copied().filter(|&[a, b]| !is_quiet(a, b)).collect();
        let reached = Topology::new(ids.clone(), &loud).distances(o);
        let mut parent = vec![None; n];
        let flows: std::collections::BTreeSet<(usize, usize)> =
            links.iter().flat_map(|&[a, b]| [(a, b), (b, a)]).filter(|(a, b)| a != b).collect();
        for (s, t) in flows {
            if let Some(got) = routes.config_owner("t", &ids[s], &ids[t], preferred.as_deref()) {
                prop_assert_eq!(&got, &owner);
                prop_assert!(!is_quiet(s, t), "{} -> {} copies over a quiet link", ids[s], ids[t]);
                prop_assert!(parent[t].is_none(), "{} copies from two neighbours", ids[t]);
                parent[t] = Some(s);
            }
        }
        prop_assert!(parent[o].is_none());
        for c in 0..n {
            prop_assert_eq!(parent[c].is_some(), c != o && reached[c].is_some(), "cluster {}", c);
            let mut at = c;
            for _ in 0..n {
                match parent[at] { Some(p) => at = p, None => break }
            }
            if reached[c].is_some() { prop_assert_eq!(at, o); }
        }
    }

    /// Simulates every flow of the topology on one record: every cluster receives it
    /// exactly once, no flow ever needs the loop guard, and propagation ends.
    #[test]
    fn every_cluster_receives_each_record_exactly_once((n, links, origin) in connected_graph(),
                                                       names in proptest::collection::hash_set("[a-z]{1,6}", 8)) {
        let ids: Vec<String> = names.into_iter().take(n).collect();
        let t = Topology::new(ids.clone(), &links);
        prop_assert_eq!(t.components().len(), 1);
        let routes = Routes::new(ids, links.iter().map(|&l| (l, all_topics())).collect());
        let received = simulate(&routes, "t", origin)?;
        prop_assert!(received.iter().all(|&c| c == 1), "received {:?}", received);
    }

    /// Random connected topologies where every link selects a random subset of three
    /// topics: for each topic and origin, every cluster the topic's links connect to
    /// the origin receives the record exactly once, and no other cluster receives it.
    #[test]
    fn per_topic_selections_reach_each_connected_cluster_once((n, links, origin) in connected_graph(),
                                                               masks in proptest::collection::vec(0u8..8, 24)) {
        let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
        let topics = ["t0", "t1", "t2"];
        let selection = |mask: u8| {
            let chosen: Vec<&str> = (0..3).filter(|b| mask & (1 << b) != 0).map(|b| topics[b]).collect();
            // An empty selection still has to be a valid regex that matches nothing here.
            TopicSelection::matching(&if chosen.is_empty() { "none".to_string() } else { chosen.join("|") }).unwrap()
        };
        let routes = Routes::new(
            ids.clone(),
            links.iter().enumerate().map(|(i, &l)| (l, selection(masks[i % masks.len()]))).collect(),
        );
        for topic in topics {
            let reach = routes.topology(topic).distances(origin);
            let received = simulate(&routes, topic, origin)?;
            for c in 0..n {
                let want = u32::from(reach[c].is_some());
                prop_assert_eq!(received[c], want, "topic {} from {}: cluster {} got {:?}", topic, ids[origin], ids[c], received);
            }
            // The parts partition exactly the clusters that some selecting link touches.
            let in_parts: usize = routes.parts(topic).iter().map(Vec::len).sum();
            let touched = (0..n).filter(|&c| !routes.topology(topic).adj[c].is_empty()).count();
            prop_assert_eq!(in_parts, touched);
        }
    }
}
