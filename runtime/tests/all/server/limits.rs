//! A tenant's session limit under concurrent creates over real HTTP, and
//! `GET /v1/sessions` paging through several tenants' sessions.

use tokio::task::JoinSet;

use super::*;

/// Bearer tokens of tenants `{prefix}0`, `{prefix}1`, …, set once in the
/// environment variables that a config built by [`limited_config`] names.
fn tokens(prefix: &'static str, n: usize) -> Vec<(String, String)> {
    static SET: OnceLock<std::sync::Mutex<BTreeSet<String>>> = OnceLock::new();
    let set = SET.get_or_init(Default::default);
    let mut done = set.lock().expect("not poisoned");
    (0..n)
        .map(|i| {
            let var = format!("LOGBOOK_TEST_LIMITS_TOKEN_{prefix}{i}").to_uppercase();
            if done.insert(var.clone()) {
                let token = format!("{prefix}{i}-{}", uuid::Uuid::now_v7().simple());
                // SAFETY: each variable is set once, under the lock, before
                // any server reads it; nothing else in this process writes
                // or reads these variables.
                unsafe { std::env::set_var(&var, token) };
            }
            let token = std::env::var(&var).expect("set above");
            (var, token)
        })
        .collect()
}

/// A config with tenants `{prefix}0..n`, each with its token and `sessions`
/// limit; their tokens.
fn limited_config(prefix: &'static str, n: usize, sessions: Option<u64>) -> (Config, Vec<String>) {
    let mut config = config();
    let mut out = Vec::new();
    for (i, (var, token)) in tokens(prefix, n).into_iter().enumerate() {
        config.tenants.insert(
            format!("{prefix}{i}"),
            TenantConfig {
                token_envs: vec![var],
                limits: TenantLimits {
                    sessions,
                    ..TenantLimits::default()
                },
                ..TenantConfig::default()
            },
        );
        out.push(token);
    }
    (config, out)
}

/// POST a JSON body (with its content type).
async fn post_json(api: &Api, path: &str, body: &Value) -> Answer {
    let response = api
        .request(Method::POST, path)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {path}: no answer: {e}"));
    let status = response.status();
    let body = response.json::<Value>().await.expect("a JSON answer");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_never_pass_the_session_limit() {
    const ROUNDS: usize = 4;
    const LIMIT: u64 = 5;
    const CREATES: usize = 50;
    let (config, tokens) = limited_config("race", ROUNDS, Some(LIMIT));
    let server = Server::start(config).await;
    for (round, token) in tokens.iter().enumerate() {
        let tenant = format!("race{round}");
        let api = server.api(Some(token));
        api.add_guest("counter").await;
        let mut creates = JoinSet::new();
        for _ in 0..CREATES {
            let api = api.clone();
            creates.spawn(async move {
                post_json(&api, "/v1/sessions", &json!({"guest": "counter"})).await
            });
        }
        let (mut created, mut refused) = (Vec::new(), 0);
        while let Some(answer) = creates.join_next().await {
            let answer = answer.expect("a create task");
            match answer.0 {
                StatusCode::CREATED => {
                    created.push(answer.1["id"].as_str().expect("id").to_owned())
                }
                _ => {
                    assert_error(&answer, 429, "limit");
                    refused += 1;
                }
            }
        }
        assert_eq!(
            (created.len(), refused),
            (LIMIT as usize, CREATES - LIMIT as usize),
            "round {round}"
        );
        let journal = server.host.journal();
        let count = journal.count(&tenant).await.expect("count");
        assert_eq!(
            (count.logs, count.sessions),
            (LIMIT, LIMIT),
            "round {round}"
        );
        let page = journal.list_page(&tenant, None, 1000).await.expect("list");
        let mut listed: Vec<String> = page.logs.iter().map(|i| i.id.to_string()).collect();
        created.sort();
        listed.sort();
        assert_eq!(
            listed, created,
            "round {round}: the journal holds what was answered 201"
        );
        let (_, list) = api.get("/v1/sessions").await;
        assert_eq!(list["total"], LIMIT, "{list}");

        // At the limit, a fork and a create by name are refused too.
        let fork = post_json(
            &api,
            &format!("/v1/sessions/{}/fork", created[0]),
            &json!({}),
        )
        .await;
        assert_error(&fork, 429, "limit");
        let named = api
            .request(Method::PUT, "/v1/sessions/by-name/one-more")
            .json(&json!({"guest": "counter"}))
            .send()
            .await
            .expect("an answer");
        assert_eq!(named.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(journal.count(&tenant).await.expect("count").logs, LIMIT);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_pages_walk_each_tenant_once() {
    const TENANTS: usize = 3;
    const N: usize = 7;
    const PAGE: usize = 3;
    let (config, tokens) = limited_config("page", TENANTS, None);
    let server = Server::start(config).await;
    let apis: Vec<Api> = tokens.iter().map(|t| server.api(Some(t))).collect();
    for api in &apis {
        api.add_guest("counter").await;
    }
    // Interleaved, so that each tenant's sessions lie among the others'.
    let mut expected = vec![Vec::new(); TENANTS];
    for _ in 0..N {
        for (api, ids) in apis.iter().zip(&mut expected) {
            let (status, body) = post_json(api, "/v1/sessions", &json!({"guest": "counter"})).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["id"].as_str().expect("id").to_owned());
        }
    }
    for (api, ids) in apis.iter().zip(&expected) {
        let mut listed = Vec::new();
        let mut path = format!("/v1/sessions?limit={PAGE}");
        loop {
            let (status, page) = api.get(&path).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            assert_eq!(page["total"], N, "{page}");
            let sessions = page["sessions"].as_array().expect("sessions");
            assert!(sessions.len() <= PAGE, "{page}");
            for s in sessions {
                let id = s["id"].as_str().expect("id").to_owned();
                assert!(
                    ids.contains(&id),
                    "another tenant's session in a page: {page}"
                );
                listed.push(id);
            }
            match page["next"].as_str() {
                Some(next) => {
                    assert_eq!(Some(next), listed.last().map(String::as_str), "{page}");
                    path = format!("/v1/sessions?limit={PAGE}&after={next}");
                }
                None => break,
            }
        }
        assert_eq!(&listed, ids, "each once, in creation order");
    }
    server.stop().await;
}
