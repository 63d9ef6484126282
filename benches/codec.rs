//! Criterion benchmarks of the per-message hot path: framing a batch of server responses, and
//! the typed views and rewrites transaction pooling does per extended-protocol message.

use bytes::{BufMut, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use pgproxy::protocol::frame::{self, Frame};
use pgproxy::protocol::message::{self, Bind, Parse};
use pgproxy::router::session_effects;

/// A typical `pgbench -S` response: RowDescription, DataRow, CommandComplete, ReadyForQuery.
fn select_response() -> BytesMut {
    let mut b = BytesMut::new();
    let mut row_desc = Vec::new();
    row_desc.extend_from_slice(&1i16.to_be_bytes());
    row_desc.extend_from_slice(b"abalance\0");
    row_desc.extend_from_slice(&[0; 18]);
    b.put_slice(Frame::new(b'T', &row_desc).raw());
    b.put_slice(Frame::new(b'D', &[0, 1, 0, 0, 0, 4, b'1', b'2', b'3', b'4']).raw());
    b.put_slice(message::command_complete("SELECT 1").raw());
    b.put_slice(message::ready_for_query(b'I').raw());
    b
}

fn bench_framing(c: &mut Criterion) {
    let batch: BytesMut = (0..64).fold(BytesMut::new(), |mut acc, _| {
        acc.put_slice(&select_response());
        acc
    });
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(batch.len() as u64));
    g.bench_function("decode_256_frames", |b| {
        b.iter(|| {
            let mut buf = batch.clone();
            let mut n = 0;
            while let Ok(Some(f)) = frame::decode(&mut buf, 1 << 30) {
                n += f.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

fn bench_extended(c: &mut Criterion) {
    let parse = Parse::encode(
        "P_0",
        "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
        &[0, 0],
    );
    let bind = Bind::encode(
        "",
        "P_0",
        &[0, 0, 0, 1, 0, 0, 0, 5, b'1', b'2', b'3', b'4', b'5', 0, 0],
    );
    c.bench_function("parse_view", |b| {
        b.iter(|| black_box(Parse::parse(black_box(parse.body()))))
    });
    c.bench_function("bind_rename", |b| {
        b.iter(|| {
            let v = Bind::parse(black_box(bind.body())).expect("valid bind");
            black_box(Bind::encode(v.portal, "pgproxy_17", v.rest))
        })
    });
    c.bench_function("session_effects_select", |b| {
        b.iter(|| {
            black_box(session_effects(black_box(
                "SELECT abalance FROM pgbench_accounts WHERE aid = 41;",
            )))
        })
    });
    c.bench_function("session_effects_update", |b| {
        b.iter(|| {
            black_box(session_effects(black_box(
                "UPDATE pgbench_accounts SET abalance = abalance + -1234 WHERE aid = 41;",
            )))
        })
    });
}

criterion_group!(benches, bench_framing, bench_extended);
criterion_main!(benches);
