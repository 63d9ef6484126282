mod common;
use common::wire::{self, Msg, RawConn};
use common::*;
use std::time::Duration;

async fn until_z(conn: &mut RawConn, who: &str) -> (Vec<Msg>, u8) {
    let mut msgs = Vec::new();
    loop {
        let msg = conn.recv().await.unwrap_or_else(|| panic!("{who}: closed before ReadyForQuery; got {msgs:?}"));
        if msg.tag == b'Z' { return (msgs, msg.body[0]); }
        msgs.push(msg);
    }
}
fn tags(msgs: &[Msg]) -> String { msgs.iter().map(|m| m.tag as char).collect() }

async fn extended_only(port: u16, who: &str, pre_simple: bool, pre_select: bool, pre_trunc: bool) {
    let mut conn = RawConn::login_password(port, "app", "secret", "app").await;
    if pre_trunc { conn.simple_query("truncate t").await; }
    if pre_simple {
        conn.send(&[wire::query("COPY t FROM STDIN"), wire::copy_data(b"1\n"), wire::copy_done()].concat()).await.unwrap();
        let (m, s) = until_z(&mut conn, who).await;
        eprintln!("{who}: simple copy -> {} {}", tags(&m), s as char);
    }
    if pre_select {
        let r = conn.simple_query("select count(*) from t").await;
        eprintln!("{who}: count {r:?}");
    }
    conn.send(&[wire::parse("", "COPY t FROM STDIN"), wire::bind("", "", &[]), wire::execute("", 0), wire::sync(),
        wire::copy_data(b"4\n5\n"), wire::copy_done(), wire::sync()].concat()).await.unwrap();
    let (m, s) = until_z(&mut conn, who).await;
    eprintln!("{who}: extended copy -> {} {}", tags(&m), s as char);
    if let Ok(x) = tokio::time::timeout(Duration::from_millis(500), conn.recv()).await {
        eprintln!("{who}: EXTRA {:?}", x.map(|m| (m.tag as char, m.body)));
    }
    let r = conn.simple_query("select 'ok'").await;
    eprintln!("{who}: after {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scratch() {
    for mode in ["transaction"] {
      for size in [1usize, 2] {
        for (pre_simple, pre_select, pre_trunc) in [(false, false, true), (true, false, true), (true, true, true), (false, true, false), (true,true,false)] {
            let (node, proxy) = node_and_proxy(|c| c.pool_mode(mode).pool_size(size)).await;
            connect_app(proxy.port()).await.batch_execute("create table t(a int)").await.unwrap();
            let who = format!("{mode} size={size} simple={pre_simple} select={pre_select} trunc={pre_trunc}");
            extended_only(node.port(), &format!("{who} PG"), pre_simple, pre_select, pre_trunc).await;
            let p = proxy.port();
            let w = who.clone();
            let r = tokio::spawn(async move { extended_only(p, &format!("{w} PROXY"), pre_simple, pre_select, pre_trunc).await }).await;
            if r.is_err() { eprintln!("{who} PROXY FAILED; log:\n{}", proxy.log().lines().filter(|l| l.contains("ERROR") || l.contains("WARN")).collect::<Vec<_>>().join("\n")); }
        }
      }
    }
}
