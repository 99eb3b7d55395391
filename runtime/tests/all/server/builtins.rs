//! The built-in examples (`counter`, `counter-v2`, `assistant`) over HTTP:
//! every tenant names them without uploading them, by name or by digest, as
//! the command line does; a tenant's own guest of the same name comes first.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_tenant_names_the_built_in_examples_without_uploading_them() {
    let (config, token_a, token_b) = tenants_config();
    let server = Server::start(config).await;
    let a = server.api(Some(token_a));
    let b = server.api(Some(token_b));

    // B uploads nothing: its sessions run on the built-ins by name.
    let (_, guests) = b.get("/v1/guests").await;
    assert_eq!(guests["guests"], json!([]), "{guests}");
    b.session("counter", "c").await;
    let waited = b.send_and_wait("c", "inc").await;
    assert_eq!(output_texts(&waited), ["count = 1"], "{waited}");
    b.session("assistant", "helper").await;
    let waited = b.send_and_wait("helper", "hello").await;
    assert_eq!(output_texts(&waited), ["echo: hello"], "{waited}");

    // By digest too, and as a fork's guest.
    let v2 = digest_of(logbook::examples::get("counter-v2").expect("built in"));
    let (status, created) = b.post("/v1/sessions", json!({"guest": v2})).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["guest"]["digest"], v2.as_str(), "{created}");
    let (status, fork) = b
        .post("/v1/sessions/c/fork", json!({"guest": "counter-v2"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{fork}");
    assert_eq!(fork["guest"]["name"], "counter-v2", "{fork}");

    // Once used, a built-in is in the tenant's list like an upload.
    let (_, guests) = b.get("/v1/guests").await;
    let names: BTreeSet<&str> = guests["guests"]
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["assistant", "counter", "counter-v2"]),
        "{guests}"
    );

    // A's own `counter` (here counter-v2's bytes) is A's `counter`; B's is
    // still the built-in.
    let bytes = guest_bytes("counter_v2");
    let (status, body) = a
        .call(Method::POST, "/v1/guests?name=counter", Some(bytes.clone()))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, mine) = a
        .put("/v1/sessions/by-name/mine", json!({"guest": "counter"}))
        .await;
    assert_eq!(
        mine["guest"]["digest"],
        digest_of(&bytes).as_str(),
        "{mine}"
    );
    let (_, info) = b.get("/v1/sessions/c").await;
    assert_eq!(
        info["guest"]["digest"],
        digest_of(logbook::examples::get("counter").expect("built in")).as_str(),
        "{info}"
    );

    // Anything else is still unknown.
    assert_error(
        &b.post("/v1/sessions", json!({"guest": "fixture_looper"}))
            .await,
        404,
        "unknown_guest",
    );
    server.stop().await;
}
