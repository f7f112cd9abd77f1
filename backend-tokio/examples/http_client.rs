//! The README's HTTP client snippet, compiled and run by CI
//! (`.ci/steps/25-http.sh` checks that the README shows this code between
//! the `readme-http` markers, with the facade's path `wharf::tokio::http`
//! for `wharf_tokio::http`, then runs it against a loopback server).
//!
//! Run: `cargo run -p wharf-tokio --example http_client --features http`.

// readme-http begin
use wharf_tokio::http::{Client, HttpError};

async fn fetch(client: &Client, url: &str) -> Result<(), HttpError> {
    let resp = client.get(url).await?; // waits (FIFO) for a connection within the limits
    println!("{} {:?}", resp.status(), resp.version());
    let body = resp.into_body().bytes().await?; // read to the end: the connection goes back
    println!("{} bytes", body.len());
    Ok(())
}

async fn run(url: &str) -> Result<(), HttpError> {
    let client = Client::builder()
        .max_total(64) // connections over all routes
        .max_per_host(8) // per route: scheme, host, port (and TLS identity)
        .build()?;
    for _ in 0..3 {
        fetch(&client, url).await?;
    }
    println!("{:?}", client.stats()); // 1 connection served the 3 requests
    Ok(())
}
// readme-http end

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), HttpError> {
    let server = wharf_test_servers::Http1Server::builder().start().await;
    run(&server.url("/")).await?;
    assert_eq!(server.stats().accepted, 1);
    Ok(())
}
