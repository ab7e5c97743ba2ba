//! The PostgreSQL listener of `durable_due` notifications: how a server
//! hears at once that another host made a run runnable.

use std::sync::Arc;

/// Forwards the `durable_due` notifications of the database at `url` to
/// `notify`, for as long as the process lives.
pub(super) async fn listen(url: String, notify: Arc<tokio::sync::Notify>) {
    loop {
        let target = match crate::pg_tls::target(&url) {
            Ok(t) => t,
            Err(e) => {
                // The writer's connection refused the same URL first.
                tracing::warn!(error = %e, "cannot listen for wake-ups");
                return;
            }
        };
        let (tls, url) = (target.tls, target.url);
        let connected = match tls {
            crate::pg_tls::Tls::Off => tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .map(|(c, conn)| (c, Messages::Plain(Box::new(conn)))),
            crate::pg_tls::Tls::Rustls(t) => tokio_postgres::connect(&url, t)
                .await
                .map(|(c, conn)| (c, Messages::Tls(Box::new(conn)))),
        };
        match connected {
            Ok((client, mut connection)) => {
                let (heard, mut hear) = tokio::sync::mpsc::unbounded_channel();
                // Polling the connection for its messages also drives it.
                let messages = tokio::spawn(async move {
                    while let Some(Ok(message)) =
                        std::future::poll_fn(|cx| connection.poll_message(cx)).await
                    {
                        if matches!(message, tokio_postgres::AsyncMessage::Notification(_)) {
                            let _ = heard.send(());
                        }
                    }
                });
                match client.batch_execute("LISTEN durable_due").await {
                    Ok(()) => {
                        notify.notify_one();
                        while hear.recv().await.is_some() {
                            notify.notify_one();
                        }
                        tracing::warn!("the connection listening for wake-ups ended; reconnecting");
                    }
                    Err(e) => tracing::warn!(error = %e, "could not listen for wake-ups"),
                }
                messages.abort();
            }
            Err(e) => tracing::warn!(error = %e, "could not connect to listen for wake-ups"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The listening connection, whichever its TLS.
enum Messages {
    Plain(
        Box<tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>>,
    ),
    Tls(
        Box<
            tokio_postgres::Connection<
                tokio_postgres::Socket,
                <tokio_postgres_rustls::MakeRustlsConnect as tokio_postgres::tls::MakeTlsConnect<
                    tokio_postgres::Socket,
                >>::Stream,
            >,
        >,
    ),
}

impl Messages {
    fn poll_message(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<tokio_postgres::AsyncMessage, tokio_postgres::Error>>> {
        match self {
            Messages::Plain(c) => c.poll_message(cx),
            Messages::Tls(c) => c.poll_message(cx),
        }
    }
}
