use super::*;

fn acl(topic: &str, principal: &str, operation: Operation, permission: Permission) -> Acl {
    Acl {
        topic: topic.into(),
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission,
    }
}

#[test]
fn read_and_describe_are_copied_write_never() {
    use Operation::*;
    use Permission::*;
    let source = [
        acl("orders", "User:r", Read, Allow),
        acl("orders", "User:w", Other, Allow),
        acl("orders", "User:all", All, Allow),
        acl("orders", "User:banned", Read, Deny),
        acl("payments", "User:r", Read, Allow),
        acl("orders", "User:d", Describe, Allow),
    ];
    let target = [acl("orders", "User:d", Describe, Allow)];
    let got = plan(&source, &target, |t| t == "orders");
    assert_eq!(
        got,
        vec![
            acl("orders", "User:all", Read, Allow),
            acl("orders", "User:all", Describe, Allow),
            acl("orders", "User:banned", Read, Deny),
            acl("orders", "User:r", Read, Allow),
        ]
    );
    // Once created, nothing is left to do; nothing on the target is ever removed.
    let mut now = target.to_vec();
    now.extend(got);
    now.push(acl("orders", "User:local", Read, Allow));
    assert_eq!(plan(&source, &now, |t| t == "orders"), vec![]);
}
