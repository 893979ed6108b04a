//! Errors without a suite: an unreachable gateway, usage errors, completion scripts and
//! the examples in the help.

use crate::harness::Kc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_gateway_is_one_line_with_exit_code_7() {
    let kc = Kc::offline("http://127.0.0.1:1");
    let out = kc
        .run_with_stdin(
            &[
                "login",
                "--gateway",
                "127.0.0.1:1",
                "--email",
                "a@example.com",
                "--password-stdin",
            ],
            "a password that is long enough\n",
        )
        .await;
    let line = out.fails(7);
    assert!(
        line.contains("cannot reach the gateway at http://127.0.0.1:1"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_with_2() {
    let kc = Kc::offline("http://127.0.0.1:1");
    assert_eq!(kc.run(&["contacts"]).await.code, 2);
    assert_eq!(
        kc.run(&[
            "contacts", "assign", "7350101", "--email", "a@b.c", "--role", "chief"
        ])
        .await
        .code,
        2
    );
    assert_eq!(kc.run(&["login"]).await.code, 2);
    assert_eq!(
        kc.run(&["login", "--email", "a@b.c", "--client-id", "x"])
            .await
            .code,
        2
    );
    // A site that is neither a number nor an id: refused before any call.
    let line = kc.run(&["site", "show", "paris"]).await.fails(2);
    assert!(line.contains("neither a site number"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn completion_scripts_and_examples() {
    let kc = Kc::offline("http://127.0.0.1:1");
    for (shell, marker) in [
        ("bash", "_kc()"),
        ("zsh", "#compdef kc"),
        ("fish", "complete -c kc"),
    ] {
        let out = kc.run(&["completion", shell]).await.ok();
        assert!(
            out.stdout.contains(marker),
            "{shell}: {}",
            &out.stdout[..out.stdout.len().min(200)]
        );
        assert!(
            out.stdout.contains("transfer-primary"),
            "{shell} completes subcommands"
        );
    }
    let help = kc.run(&["--help"]).await.ok().stdout;
    assert!(
        help.contains("Examples:") && help.contains("kc login --email"),
        "{help}"
    );
    for command in [
        vec!["contacts", "assign"],
        vec!["access", "grant"],
        vec!["requests", "approve"],
        vec!["notices", "send"],
        vec!["check"],
    ] {
        let mut args = command.clone();
        args.push("--help");
        let help = kc.run(&args).await.ok().stdout;
        assert!(
            help.contains(&format!("kc {}", command.join(" "))),
            "{command:?}: {help}"
        );
    }
}
