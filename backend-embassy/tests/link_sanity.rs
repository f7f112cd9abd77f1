//! The test link itself: a plain embassy-net socket talks to the echo server,
//! and a SYN to the black-hole address gets no answer.

mod common;

use common::{eventually, server, Ev, Log, Mode, BLACKHOLE, SERVER};
use embassy_futures::select::{select, Either};
use embassy_net::tcp::TcpSocket;
use embassy_time::Duration;
use embedded_io_async::{Read, Write};

#[tokio::test(flavor = "current_thread")]
async fn two_stacks_talk_tcp() {
    two_stacks!(5, |client, server_stack| {
        let log = Log::default();
        let test = async {
            let (mut rx, mut tx) = ([0u8; 512], [0u8; 512]);
            let mut s = TcpSocket::new(client, &mut rx, &mut tx);
            s.connect((SERVER, 7000)).await.unwrap();
            s.write_all(b"hello").await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            assert_eq!(&buf, b"hello");
            let port = s.local_endpoint().unwrap().port;
            s.close();
            s.flush().await.unwrap();
            assert!(
                eventually(1000, || log.events().contains(&Ev::Fin(port))).await,
                "{:?}",
                log.events()
            );

            let (mut rx2, mut tx2) = ([0u8; 512], [0u8; 512]);
            let mut t = TcpSocket::new(client, &mut rx2, &mut tx2);
            let r = embassy_time::with_timeout(
                Duration::from_millis(200),
                t.connect((BLACKHOLE, 7000)),
            )
            .await;
            assert!(r.is_err(), "the black hole never answers");
            assert_eq!(log.accepted(), 1);
        };
        match select(server(server_stack, 7000, Mode::Echo, &log), test).await {
            Either::Second(()) => {}
            Either::First(never) => never,
        }
    })
}
