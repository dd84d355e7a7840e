//! ACL sync, off by default (docs/topic-configs.md, "ACLs"): the literal-pattern topic
//! ACLs that let a principal READ or DESCRIBE a topic follow the topic's owner cluster
//! along its tree, as its settings do. Never WRITE (only Duplex writes replicated
//! records, as MirrorMaker 2 has it), never a prefixed or wildcard pattern, and never a
//! removal: an ACL removed on the owner stays on the others until removed there.

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;

/// An operation of an ACL binding, as far as ACL sync cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// READ.
    Read,
    /// DESCRIBE.
    Describe,
    /// ALL: copied as READ and DESCRIBE.
    All,
    /// Any other (WRITE, ALTER, …): never copied.
    Other,
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// ALLOW.
    Allow,
    /// DENY.
    Deny,
}

/// A literal-pattern ACL binding on a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    /// The topic (its whole name: a literal pattern).
    pub topic: String,
    /// E.g. `User:orders-reader`.
    pub principal: String,
    /// `*` or an address.
    pub host: String,
    /// What it allows or denies.
    pub operation: Operation,
    /// ALLOW or DENY.
    pub permission: Permission,
}

/// The bindings the source's `acls` call for on the target: for each topic `copies`
/// says this flow copies, its READ and DESCRIBE bindings (ALL as both), ALLOW and DENY,
/// less those the target has. DENY is copied too: a principal denied a topic on the
/// owner must not read it on another cluster.
pub fn plan(source: &[Acl], target: &[Acl], copies: impl Fn(&str) -> bool) -> Vec<Acl> {
    let has: BTreeSet<&Acl> = target.iter().collect();
    let mut out = BTreeSet::new();
    for a in source.iter().filter(|a| copies(&a.topic)) {
        let ops: &[Operation] = match a.operation {
            Operation::Read => &[Operation::Read],
            Operation::Describe => &[Operation::Describe],
            Operation::All => &[Operation::Read, Operation::Describe],
            Operation::Other => &[],
        };
        for &operation in ops {
            let want = Acl {
                operation,
                ..a.clone()
            };
            if !has.contains(&want) {
                out.insert(want);
            }
        }
    }
    out.into_iter().collect()
}
