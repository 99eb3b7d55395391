//! The process's tracing: spans and events to stderr, filtered by
//! `LOGBOOK_LOG` (default `warn`), and, when a collector is configured
//! (`[telemetry] otlp`, else `OTEL_EXPORTER_OTLP_ENDPOINT`), the `info` spans
//! of Logbook and of its HTTP layer exported over OTLP/HTTP (protobuf).
//!
//! Invariants: the exporter sends through the host's own reqwest client, on
//! the tokio runtime whose handle it was given (the SDK's batch processor
//! runs on a thread of its own and only awaits the spawned sends), so the
//! runtime must outlive [`Telemetry`]; dropping it flushes what is batched.
//! No span carries a secret: fields are ids, kinds, names and methods, never
//! headers or content.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::TelemetryConfig;

/// What the exporter sends: spans at this level and above, of these targets.
const EXPORTED: &str = "logbook=info,tower_http=info";

/// Time one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variables that turn the exporter on without configuration.
const ENDPOINT_VARS: &[&str] = &[
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Why the exporter cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// The exporter's HTTP client cannot be built.
    #[error("cannot build the OTLP exporter's HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// The exporter refuses its configuration (an endpoint that is not a URL).
    #[error("cannot set up the OTLP exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The installed tracing; dropping it flushes and stops the exporter.
#[must_use = "dropping it stops the exporter"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether spans are exported.
    pub fn exports(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("warning: the OTLP exporter did not flush: {e}");
        }
    }
}

/// Install the process's subscriber: stderr, and the OTLP exporter when
/// `settings` or the environment name a collector. A subscriber installed
/// before (a test's) is left in place.
pub fn init(
    settings: &TelemetryConfig,
    runtime: &tokio::runtime::Handle,
) -> Result<Telemetry, TelemetryError> {
    let provider = provider(settings, runtime)?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_filter(
            tracing_subscriber::EnvFilter::try_from_env("LOGBOOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    let exported = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("logbook"))
            .with_filter(tracing_subscriber::EnvFilter::new(EXPORTED))
    });
    let _ = tracing_subscriber::registry()
        .with(stderr)
        .with(exported)
        .try_init();
    Ok(Telemetry { provider })
}

/// The tracer provider, if a collector is named.
fn provider(
    settings: &TelemetryConfig,
    runtime: &tokio::runtime::Handle,
) -> Result<Option<SdkTracerProvider>, TelemetryError> {
    let from_env = ENDPOINT_VARS
        .iter()
        .any(|var| std::env::var(var).is_ok_and(|v| !v.is_empty()));
    if settings.otlp.is_none() && !from_env {
        return Ok(None);
    }
    crate::effects::install_crypto_provider();
    let client = reqwest::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(TelemetryError::HttpClient)?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT)
        .with_http_client(OnRuntime {
            client,
            runtime: runtime.clone(),
        });
    // Configured: the base URL, as the environment variable takes it.
    if let Some(base) = &settings.otlp {
        exporter = exporter.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
    }
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(
            settings
                .service_name
                .clone()
                .unwrap_or_else(|| "logbook".into()),
        )
        .build();
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter.build()?)
            .with_resource(resource)
            .build(),
    ))
}

/// Sends the exporter's requests with reqwest, on the host's tokio runtime.
#[derive(Debug)]
struct OnRuntime {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for OnRuntime {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let client = self.client.clone();
        let (status, headers, body) = self
            .runtime
            .spawn(async move {
                let response = client.execute(request).await?;
                let status = response.status();
                let headers = response.headers().clone();
                let body = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, headers, body))
            })
            .await??;
        let mut response = Response::builder().status(status).body(body)?;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
