//! Fuzz targets (bolero) for everything that decodes untrusted input: v1 client
//! frames, each dialect's client frames, publish bodies, JWTs, Redis bridge messages,
//! and stored event bytes through the dialect encoders. `cargo test` runs each for a
//! bounded number of random inputs (and replays any saved crash corpus under
//! `src/__fuzz__/`); `cargo bolero test jobwire_server::fuzz::<target>` runs one
//! coverage-guided. The property is the same everywhere: any input gets a value or a
//! typed error, never a panic.

use crate::compat::ingest;
use crate::compat::{all_decoders, encode_any};
use crate::transport::ws::decode_v1;

#[test]
fn client_frames() {
    bolero::check!().for_each(|bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let _ = decode_v1(&text);
        for decode in all_decoders() {
            let _ = decode(&text);
        }
    });
}

#[test]
fn client_frames_shaped_like_json() {
    // Mostly-valid JSON reaches deeper than random bytes.
    bolero::check!()
        .with_type::<(String, String, Option<u64>, bool)>()
        .for_each(|(ty, id, since, extra)| {
            let mut v = serde_json::json!({"type": ty, "job_id": id});
            if let Some(s) = since {
                v["since"] = serde_json::json!(s);
            }
            if *extra {
                v["positions"] = serde_json::json!({ id: since });
            }
            let text = v.to_string();
            let _ = decode_v1(&text);
            for decode in all_decoders() {
                let _ = decode(&text);
            }
        });
}

#[test]
fn publish_bodies() {
    bolero::check!().for_each(|bytes: &[u8]| {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let _ = crate::routes::jobs::parse_events(v);
        }
    });
}

#[test]
fn jwts() {
    let verifier = crate::auth::Verifier::new(
        crate::auth::KeySource::Secret(b"fuzz-secret-0123456789abcdefghijkl".to_vec()),
        None,
        None,
        "tenant".into(),
    );
    let Ok(verifier) = verifier else {
        panic!("verifier setup")
    };
    bolero::check!().for_each(|bytes: &[u8]| {
        let _ = verifier.verify(&String::from_utf8_lossy(bytes));
    });
}

#[test]
fn redis_bridge_messages() {
    bolero::check!()
        .with_type::<(bool, Vec<u8>)>()
        .for_each(|(a6hub, payload)| {
            let channel = if *a6hub {
                "job:1:updates"
            } else {
                "job_progress:j"
            };
            let _ = ingest::decode(channel, payload);
        });
}

#[test]
fn stored_events_through_dialect_encoders() {
    bolero::check!().for_each(|bytes: &[u8]| {
        encode_any(bytes);
    });
}
