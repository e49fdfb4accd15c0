//! An upload has the networks of the deployments it brings made while its image loads (so
//! creating them does not follow the load); the deployment then runs on that network, and a
//! network made for an upload that never completes (Berth killed during it) is removed.

use std::time::Duration;

use crate::fixture::Options;
use crate::interruptions::{Pause, curl, get_app};
use crate::supervisor::{
    HelloLease, docker, docker_lines, installation, manifest, readiness_on_health,
    start_server_with, subscribe, wait_for, wait_ready,
};
use crate::upload::{create_microservice, zip_of};

const SETTLE: Duration = Duration::from_secs(60);

/// Ids of the networks this installation made for application `id`.
fn networks_of(installation: &str, id: &str) -> Vec<String> {
    docker_lines(&[
        "network",
        "ls",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label=berth.installation={installation}"),
        "--filter",
        &format!("label=berth.app={id}"),
    ])
}

#[test]
fn an_upload_makes_its_network_while_the_image_loads() {
    let hello = HelloLease::acquire();
    let pause = Pause::new("upload-loaded");
    let (cleanup, mut server) = start_server_with(
        &[],
        Options {
            env: pause.env(),
            ..Options::default()
        },
    );
    let installation = installation(&cleanup);
    let t = crate::fixture::create_tenant(&server, "ahead");
    // (isolation, whether the upload completes or Berth is killed at the pause)
    for (isolation, completes) in [("MULTI_TENANT", true), ("PER_TENANT", false)] {
        let what = format!("{isolation} completes={completes}");
        let id = create_microservice(&server, &t)["id"]
            .as_str()
            .unwrap()
            .to_owned();
        subscribe(&server, &t.id, &id).expect(201);
        let zip = tempfile::NamedTempFile::new().unwrap();
        let manifest = manifest(isolation, 1, readiness_on_health());
        std::fs::write(
            zip.path(),
            zip_of(&[
                ("cumulocity.json", manifest.as_bytes()),
                ("image.tar", &hello.0.archive),
            ]),
        )
        .unwrap();
        let mut client = curl(
            &server,
            (&t.admin_login, &t.admin_password),
            "POST",
            &format!("/application/applications/{id}/binaries"),
            Some(zip.path()),
        );
        // The image is in the engine, the version not recorded: the network is made already
        // (or while the upload waits here), not after the version.
        pause.wait_reached();
        let made = wait_for(SETTLE, &format!("{what}: the network made ahead"), || {
            let found = networks_of(installation, &id);
            (found.len() == 1).then(|| found[0].clone())
        });
        if completes {
            pause.release();
            assert!(client.wait().unwrap().success(), "{what}: curl failed");
            wait_ready(&server, &t, &id, 1);
            let container = docker(&[
                "ps",
                "-q",
                "--filter",
                &format!("label=berth.installation={installation}"),
                "--filter",
                &format!("label=berth.app={id}"),
            ]);
            let on = docker(&[
                "inspect",
                "--format",
                "{{range .NetworkSettings.Networks}}{{.NetworkID}}{{end}}",
                &crate::supervisor::network_container(&container),
            ]);
            assert_eq!(
                on, made,
                "{what}: the container runs on the network made ahead"
            );
            assert_eq!(networks_of(installation, &id), vec![made], "{what}");
        } else {
            server.crash();
            let _ = client.wait();
            pause.release();
            server = server.restart();
            wait_for(SETTLE, &format!("{what}: the network removed"), || {
                networks_of(installation, &id).is_empty().then_some(())
            });
            let app = get_app(&server, &t, &id).expect(200).json();
            assert!(app["activeVersionId"].is_null(), "{what}: {app}");
        }
        pause.rearm();
    }
}
