//! The daemon ↔ child frames are a trust boundary: whatever a child writes (random bytes,
//! frames cut anywhere, lengths past the cap) the daemon's reader and the conversion of
//! frames into run events end in a value or an error, never a panic, and never read a frame
//! over its cap. The same holds for the child's reader of the daemon's frames.

use proptest::prelude::*;

use super::fuzzing::{child_reads, daemon_reads};
use super::wire::{self, WireError};
use crate::proto::sandbox::{self as pb, FromChild, ToChild, from_child, to_child};

/// An input as a child names it, with arbitrary contents.
fn need() -> impl Strategy<Value = pb::Need> {
    let text = || ".{0,40}";
    (
        text(),
        proptest::collection::vec(any::<u8>(), 0..40),
        text(),
        text(),
        text(),
    )
        .prop_map(|(node, fingerprint, connection, query, binds)| pb::Need {
            node,
            fingerprint,
            connection,
            query,
            binds,
        })
}

/// Every frame a child can send, with arbitrary contents.
fn from_child_msg() -> impl Strategy<Value = from_child::Msg> {
    let text = || ".{0,40}";
    let bytes = || proptest::collection::vec(any::<u8>(), 0..300);
    prop_oneof![
        (
            proptest::collection::vec((text(), any::<bool>(), text()), 0..4),
            any::<u32>(),
            proptest::collection::vec(need(), 0..3)
        )
            .prop_map(
                |(states, landlock_abi, inputs)| from_child::Msg::Ready(pb::Ready {
                    confinements: states
                        .into_iter()
                        .map(|(name, active, detail)| pb::Confinement {
                            name,
                            active,
                            detail
                        })
                        .collect(),
                    landlock_abi,
                    inputs,
                })
            ),
        need().prop_map(from_child::Msg::Need),
        (text(), any::<u64>(), bytes(), any::<bool>()).prop_map(
            |(node, rows, arrow_ipc, too_large_to_cache)| {
                from_child::Msg::Loaded(pb::Loaded {
                    node,
                    rows,
                    arrow_ipc: arrow_ipc.into(),
                    too_large_to_cache,
                })
            }
        ),
        (text(), text(), any::<bool>(), any::<Option<u64>>()).prop_map(
            |(node, tool, finished, rows)| from_child::Msg::Progress(pb::Progress {
                node,
                tool,
                finished,
                rows,
            })
        ),
        (text(), bytes(), any::<bool>()).prop_map(|(name, arrow_ipc, last)| {
            from_child::Msg::Output(pb::Output {
                name,
                arrow_ipc,
                last,
            })
        }),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(load_us, compute_us, encode_us)| {
            from_child::Msg::Done(pb::Done {
                load_us,
                compute_us,
                encode_us,
            })
        }),
        (text(), text(), any::<i32>()).prop_map(|(code, message, class)| {
            from_child::Msg::Failure(pb::Failure {
                code,
                message,
                class,
            })
        }),
        (text(), any::<u64>(), any::<bool>()).prop_map(|(node, rows, cached)| {
            from_child::Msg::Input(pb::Input { node, rows, cached })
        }),
        proptest::collection::vec(
            (
                text(),
                text(),
                proptest::collection::vec((text(), text()), 0..4)
            ),
            0..3
        )
        .prop_map(|tables| from_child::Msg::Tables(pb::Tables {
            tables: tables
                .into_iter()
                .map(|(schema, name, columns)| pb::Table {
                    schema,
                    name,
                    columns: columns
                        .into_iter()
                        .map(|(name, r#type)| pb::Column { name, r#type })
                        .collect(),
                })
                .collect(),
        })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, .. ProptestConfig::default() })]

    /// Random bytes from a child: frames or an error, never a panic, never past the cap.
    #[test]
    fn random_bytes_from_a_child(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                                 cap in 0usize..4096) {
        let _ = daemon_reads(&bytes, cap);
    }

    /// The fuzz target's entry on random input: both directions, never a panic.
    #[test]
    fn the_fuzzing_entry_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        super::fuzz_frames(&bytes);
    }

    /// Valid frames cut at any byte: the whole frames before the cut are read exactly; a cut
    /// between frames is a clean end, a cut inside one (its length included) an error.
    #[test]
    fn frames_from_a_child_cut_anywhere(msgs in proptest::collection::vec(from_child_msg(), 1..4),
                                        cut in any::<prop::sample::Index>()) {
        let frames: Vec<FromChild> = msgs.into_iter().map(|m| FromChild { msg: Some(m) }).collect();
        let mut bytes = Vec::new();
        let mut ends = vec![0];
        for f in &frames {
            bytes.extend_from_slice(&wire::encode(f));
            ends.push(bytes.len());
        }
        let at = cut.index(bytes.len() + 1);
        let (read, ended) = daemon_reads(&bytes[..at], 1 << 20);
        let whole = ends.iter().filter(|&&e| e > 0 && e <= at).count();
        prop_assert_eq!(&read[..], &frames[..whole]);
        prop_assert_eq!(ended.is_ok(), ends.contains(&at));
    }

    /// A frame whose length is over the cap is refused as too large, whatever follows it.
    #[test]
    fn a_length_over_the_cap_is_refused(cap in 0usize..65536, over in 1u32..1_000_000,
                                        rest in proptest::collection::vec(any::<u8>(), 0..64)) {
        let len = u32::try_from(cap).unwrap() + over;
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend_from_slice(&rest);
        let (read, ended) = daemon_reads(&bytes, cap);
        prop_assert!(read.is_empty());
        prop_assert!(matches!(ended, Err(WireError::TooLarge(n)) if n == len as usize));
    }

    /// The child's side: random bytes or a cut Setup as the daemon's frames: a task or an
    /// error, never a panic.
    #[test]
    fn random_bytes_to_a_child(bytes in proptest::collection::vec(any::<u8>(), 0..2048),
                               cut in any::<prop::sample::Index>(), workflow in ".{0,200}") {
        let _ = child_reads(&bytes, 4096);
        let setup = ToChild {
            msg: Some(to_child::Msg::Setup(pb::Setup {
                task: Some(pb::setup::Task::Run(pb::RunTask { workflow_json: workflow, params_json: String::new() })),
                ..Default::default()
            })),
        };
        let encoded = wire::encode(&setup);
        let at = cut.index(encoded.len());
        let mut r = &encoded[..at];
        let got = wire::read::<ToChild, _>(&mut r, 1 << 20);
        if at == 0 {
            prop_assert!(matches!(got, Ok(None)));
        } else {
            prop_assert!(got.is_err(), "a frame cut at {} of {} bytes was read", at, encoded.len());
        }
    }
}
