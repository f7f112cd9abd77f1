//! The raw TCP fault server, refused and hanging connects, through plain `TcpStream`s.

mod common;

use std::io::ErrorKind;
use std::time::Instant;

use common::*;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use wharf_test_servers::{
    CloseReason, Fault, FaultMix, HangingConnect, RefusedPort, TcpFaultServer,
};

struct Line {
    s: BufReader<TcpStream>,
}

impl Line {
    async fn connect(addr: std::net::SocketAddr) -> Line {
        Line::try_connect(addr).await.unwrap()
    }
    async fn try_connect(addr: std::net::SocketAddr) -> std::io::Result<Line> {
        Ok(Line {
            s: BufReader::new(TcpStream::connect(addr).await?),
        })
    }
    async fn send(&mut self, l: &str) -> std::io::Result<()> {
        self.s
            .get_mut()
            .write_all(format!("{l}\n").as_bytes())
            .await
    }
    async fn recv(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        let n = within("line", self.s.read_line(&mut line)).await?;
        if n == 0 {
            return Err(ErrorKind::UnexpectedEof.into());
        }
        Ok(line)
    }
    async fn ask(&mut self, l: &str) -> std::io::Result<String> {
        self.send(l).await?;
        self.recv().await
    }
    async fn end(&mut self) -> ReadEnd {
        read_end(self.s.get_mut()).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoes_lines_and_counts_them() {
    let server = TcpFaultServer::builder().start().await;
    let mut c = Line::connect(server.addr()).await;
    assert_eq!(c.ask("hello").await.unwrap(), "hello\n");
    assert_eq!(c.ask("!who").await.unwrap(), "conn 1 req 2\n");
    assert_eq!(c.ask("!sleep 10").await.unwrap(), "slept\n");
    assert_eq!(c.ask("!close").await.unwrap(), "bye\n");
    assert_eq!(c.end().await, ReadEnd::Eof);
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert_eq!(st.requests, 4);
    assert_eq!(st.conns[0].fault, Some(Fault::None));
    assert_eq!(st.conns[0].close, Some(CloseReason::Fault));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_idle_sends_fin_and_records_a_late_request() {
    let server = TcpFaultServer::builder()
        .fault(Fault::CloseIdle(ms(300)))
        .start()
        .await;
    let mut c = Line::connect(server.addr()).await;
    assert_eq!(c.ask("a").await.unwrap(), "a\n");
    let t = Instant::now();
    server.wait_for("FIN", |s| s.server_closed() == 1).await;
    assert!(t.elapsed() >= ms(250), "closed before the idle timeout");
    c.send("late").await.unwrap();
    assert_eq!(c.end().await, ReadEnd::Eof);
    let st = server.wait_for("late", |s| s.late_requests == 1).await;
    assert_eq!(st.conns[0].close, Some(CloseReason::IdleTimeout));
    assert_eq!(st.conns[0].late_bytes, 5);
    assert_eq!(st.requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_idle_sends_rst() {
    let server = TcpFaultServer::builder()
        .fault(Fault::ResetIdle(ms(200)))
        .start()
        .await;
    let mut c = Line::connect(server.addr()).await;
    c.ask("a").await.unwrap();
    assert_eq!(c.end().await, ReadEnd::Reset);
    let st = server.wait_for("closed", |s| s.open == 0).await;
    assert!(st.conns[0].reset_by_server);
    assert_eq!(st.conns[0].close, Some(CloseReason::IdleTimeout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_after_and_reset_after_n_requests() {
    let server = TcpFaultServer::builder()
        .fault(Fault::CloseAfter(2))
        .start()
        .await;
    let mut c = Line::connect(server.addr()).await;
    c.ask("1").await.unwrap();
    c.ask("2").await.unwrap();
    assert_eq!(c.end().await, ReadEnd::Eof);

    server.set_fault(Fault::ResetAfter(2));
    let mut c = Line::connect(server.addr()).await;
    c.ask("1").await.unwrap();
    assert_eq!(
        c.ask("2").await.unwrap(),
        "2\n",
        "the last reply arrives before the RST"
    );
    assert_eq!(c.end().await, ReadEnd::Reset);
    let st = server.wait_for("both closed", |s| s.open == 0).await;
    assert_eq!(st.requests_per_conn(), vec![2, 2]);
    assert_eq!(st.closed_for(&CloseReason::MaxRequests), 2);
    assert_eq!(
        (st.conns[0].reset_by_server, st.conns[1].reset_by_server),
        (false, true)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_after_time_and_reset_or_close_on_accept() {
    let server = TcpFaultServer::builder()
        .fault(Fault::ResetAfterTime(ms(300)))
        .start()
        .await;
    let t = Instant::now();
    let mut c = Line::connect(server.addr()).await;
    assert_eq!(c.ask("x").await.unwrap(), "x\n");
    assert_eq!(c.end().await, ReadEnd::Reset);
    assert!(t.elapsed() >= ms(300));

    server.set_fault(Fault::ResetOnAccept);
    // The RST may reach the client before tokio checks the connect's result.
    match TcpStream::connect(server.addr()).await {
        Ok(mut s) => assert_eq!(read_end(&mut s).await, ReadEnd::Reset),
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
    }

    server.set_fault(Fault::CloseOnAccept);
    let mut s = TcpStream::connect(server.addr())
        .await
        .expect("connect succeeds");
    assert_eq!(read_end(&mut s).await, ReadEnd::Eof);
    drop(s);
    let st = server.wait_for("all closed", |s| s.open == 0).await;
    assert_eq!(st.closed_for(&CloseReason::Fault), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hang_reads_but_never_answers() {
    let server = TcpFaultServer::builder().fault(Fault::Hang).start().await;
    let mut c = Line::connect(server.addr()).await;
    c.send("anyone?").await.unwrap();
    let mut line = String::new();
    let r = tokio::time::timeout(ms(500), c.s.read_line(&mut line)).await;
    assert!(r.is_err(), "got an answer: {line:?}");
    let st = server.stats();
    assert_eq!((st.open, st.requests), (1, 0));
    drop(c);
    server.wait_for("client gone", |s| s.open == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_replies_arrive_after_the_delay() {
    let server = TcpFaultServer::builder()
        .fault(Fault::DelayReplies(ms(300)))
        .start()
        .await;
    let mut c = Line::connect(server.addr()).await;
    let t = Instant::now();
    assert_eq!(c.ask("slow").await.unwrap(), "slow\n");
    assert!(t.elapsed() >= ms(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_then_resume_on_the_same_port() {
    let server = TcpFaultServer::builder().start().await;
    let mut c = Line::connect(server.addr()).await;
    c.ask("before").await.unwrap();
    server.refuse().await.unwrap();
    for _ in 0..3 {
        let e = TcpStream::connect(server.addr()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    }
    assert_eq!(c.ask("still served").await.unwrap(), "still served\n");
    server.resume().await.unwrap();
    let mut d = Line::connect(server.addr()).await;
    assert_eq!(d.ask("after").await.unwrap(), "after\n");
    assert_eq!(server.stats().accepted, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_port_refuses_at_once() {
    let p = RefusedPort::new();
    for _ in 0..3 {
        let t = Instant::now();
        let e = TcpStream::connect(p.addr()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        assert!(t.elapsed() < ms(5000));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_connect_outlasts_a_client_timeout() {
    let h = HangingConnect::new().await;
    for _ in 0..2 {
        let r = tokio::time::timeout(ms(1500), TcpStream::connect(h.addr())).await;
        assert!(r.is_err(), "connect completed: {r:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_connects_hang_until_released_then_complete() {
    let server = TcpFaultServer::builder().backlog(0).start().await;
    let fillers = server.hold_connects().await.unwrap();
    assert!(fillers >= 1);
    let r = tokio::time::timeout(ms(1200), TcpStream::connect(server.addr())).await;
    assert!(r.is_err(), "connect completed while held");
    let started = Instant::now();
    let pending = tokio::spawn({
        let addr = server.addr();
        async move {
            let s = TcpStream::connect(addr).await;
            (s, Instant::now())
        }
    });
    tokio::time::sleep(ms(300)).await;
    assert!(!pending.is_finished(), "connected while held");
    let released = Instant::now();
    server.release_connects().await.unwrap();
    let (s, connected) = within("connect after release", pending).await.unwrap();
    let s = s.expect("connect succeeds after release");
    assert!(connected > released, "connect completed before release");
    assert!(connected - started >= ms(300));
    let mut c = Line {
        s: BufReader::new(s),
    };
    assert_eq!(c.ask("in").await.unwrap(), "in\n");
    let st = server.stats();
    assert_eq!(st.accepted, 1, "fillers are not counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_open_is_exact() {
    let server = TcpFaultServer::builder().start().await;
    let mut conns = Vec::new();
    for _ in 0..10 {
        let mut c = Line::connect(server.addr()).await;
        c.ask("x").await.unwrap();
        conns.push(c);
    }
    server.wait_for("10 open", |s| s.open == 10).await;
    conns.truncate(4);
    server.wait_for("4 open", |s| s.open == 4).await;
    for _ in 0..3 {
        let mut c = Line::connect(server.addr()).await;
        c.ask("x").await.unwrap();
        conns.push(c);
    }
    let st = server.wait_for("7 open", |s| s.open == 7).await;
    assert_eq!((st.accepted, st.peak_open), (13, 10));
}

#[test]
fn a_fault_mix_is_reproducible_from_its_seed() {
    let mk = || {
        FaultMix::new(7)
            .with(0.05, Fault::ResetOnAccept)
            .with(0.05, Fault::ResetAfter(2))
            .with(0.05, Fault::Hang)
    };
    let (mut a, mut b) = (mk(), mk());
    let xs: Vec<_> = (0..2000).map(|_| a.draw()).collect();
    let ys: Vec<_> = (0..2000).map(|_| b.draw()).collect();
    assert_eq!(xs, ys);
    let faulty = xs.iter().filter(|f| **f != Fault::None).count();
    assert!(
        (200..=400).contains(&faulty),
        "15% of 2000 expected, got {faulty}"
    );
    let mut c = FaultMix::new(8).with(0.05, Fault::ResetOnAccept);
    let zs: Vec<_> = (0..2000).map(|_| c.draw()).collect();
    assert_ne!(xs, zs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_with_a_fault_mix_records_each_connections_fault() {
    let mix = FaultMix::new(2024)
        .with(0.1, Fault::ResetOnAccept)
        .with(0.1, Fault::CloseAfter(1))
        .with(0.1, Fault::ResetAfter(1));
    let server = TcpFaultServer::builder()
        .mix(mix.clone())
        .close_linger(ms(0))
        .start()
        .await;
    let mut expected = mix;
    let mut outcomes = Vec::new();
    for i in 0..200 {
        let Ok(mut c) = Line::try_connect(server.addr()).await else {
            outcomes.push((false, false)); // reset before the connect was checked
            continue;
        };
        let first = c.ask(&format!("n{i}")).await;
        let second = match first {
            Ok(_) => c.ask("again").await.map(|_| ()),
            Err(_) => Err(ErrorKind::Other.into()),
        };
        outcomes.push((first.is_ok(), second.is_ok()));
    }
    let st = server.wait_for("all closed", |s| s.open == 0).await;
    assert_eq!(st.accepted, 200);
    for (i, conn) in st.conns.iter().enumerate() {
        let f = expected.draw();
        assert_eq!(conn.fault.as_ref(), Some(&f), "connection {}", i + 1);
        let (first, second) = outcomes[i];
        match f {
            Fault::ResetOnAccept => assert!(!first),
            Fault::CloseAfter(1) | Fault::ResetAfter(1) => assert!(first && !second),
            _ => assert!(first && second),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_live_counts_what_the_client_holds() {
    let server = TcpFaultServer::builder().start().await;
    // One after the other, each closed before the next connects: one live at
    // a time, whatever the server's tasks have noticed.
    for _ in 0..20 {
        let mut c = Line::connect(server.addr()).await;
        assert_eq!(c.ask("x").await.unwrap(), "x\n");
        drop(c);
    }
    server.wait_for("all accepted", |s| s.accepted == 20).await;
    assert_eq!(server.stats().peak_live, 1);
    // Three held at once: three live.
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Line::connect(server.addr()).await;
        assert_eq!(c.ask("y").await.unwrap(), "y\n");
        held.push(c);
    }
    assert_eq!(server.stats().peak_live, 3);
    // A reset still resets (the duplicate is dropped first).
    let mut c = Line::connect(server.addr()).await;
    c.send("!reset").await.unwrap();
    assert_eq!(c.end().await, ReadEnd::Reset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peak_live_sees_a_close_behind_unread_bytes() {
    // A client that writes and closes before the server reads: the server's
    // peek sees the bytes, not the FIN behind them; the kernel's state says
    // the client closed. The server is slow to read (its replies are
    // delayed), so the bytes are still unread at the next accept.
    let server = TcpFaultServer::builder()
        .fault(Fault::DelayReplies(std::time::Duration::from_millis(300)))
        .start()
        .await;
    let mut a = Line::connect(server.addr()).await;
    a.send("one").await.unwrap();
    // The server read "one" and sleeps: "two" stays in its socket.
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    a.send("two").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let mut b = Line::connect(server.addr()).await;
    assert_eq!(b.ask("x").await.unwrap(), "x\n");
    assert_eq!(
        server.stats().peak_live,
        1,
        "{:?}",
        server.stats().peak_live
    );
    // And a live client with unread bytes counts.
    b.send("y").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    b.send("z").await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let _c = Line::connect(server.addr()).await;
    server.wait_for("accepted", |s| s.accepted == 3).await;
    assert_eq!(server.stats().peak_live, 2);
}
