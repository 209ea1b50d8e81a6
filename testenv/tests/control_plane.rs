//! The test control plane itself: the API server answers with the version testenv built, the CRDs are served, and
//! Postgres answers queries.
#![allow(clippy::unwrap_used)]

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;

#[tokio::test]
async fn api_server_reports_a_v1_34_version_and_serves_the_crds() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let version = client.apiserver_version().await.unwrap();
    assert_eq!(version.major, "1");
    assert!(version.minor.trim_end_matches('+').parse::<u32>().unwrap() >= 34, "minor {}", version.minor);

    let crds: Api<CustomResourceDefinition> = Api::all(client);
    for name in
        ["modelrollouts.rampart.dev", "httproutes.gateway.networking.k8s.io", "inferenceservices.serving.kserve.io"]
    {
        let crd = crds.get(name).await.unwrap();
        let established =
            crd.status.unwrap().conditions.unwrap().into_iter().any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{name} is not established");
    }
}

#[tokio::test]
async fn namespaces_handed_out_are_distinct() {
    let env = rampart_testenv::shared().unwrap();
    let client = env.client().await.unwrap();
    let a = env.namespace(&client, "iso").await.unwrap();
    let b = env.namespace(&client, "iso").await.unwrap();
    assert_ne!(a, b);
}

#[test]
fn postgres_answers_a_query_in_a_fresh_database() {
    let postgres = rampart_testenv::shared_postgres().unwrap();
    let url = postgres.new_database().unwrap();
    assert!(url.starts_with("postgres://postgres@127.0.0.1:"), "{url}");
    assert_eq!(postgres.psql("SELECT 6 * 7").unwrap(), "42");
    let database = url.rsplit('/').next().unwrap();
    let exists = postgres.psql(&format!("SELECT count(*) FROM pg_database WHERE datname = '{database}'")).unwrap();
    assert_eq!(exists, "1");
}

#[test]
fn a_stopped_postgres_comes_back_with_its_data() {
    let mut postgres = rampart_testenv::Postgres::start().unwrap();
    postgres.psql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (7)").unwrap();
    postgres.stop();
    assert!(postgres.psql("SELECT 1").is_err(), "a stopped server must refuse queries");
    postgres.restart().unwrap();
    assert_eq!(postgres.psql("SELECT n FROM kept").unwrap(), "7");
}
