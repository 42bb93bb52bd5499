//! Ids and timestamps: deterministic name-derived ids for seeded resources, fresh
//! UUIDs for created ones, the Identity Store id prefix, epoch seconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, as AWS JSON timestamps are sent.
pub fn epoch_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// A deterministic, UUID-shaped id derived from `name` (FNV-1a + splitmix64, two lanes).
pub fn det_uuid(name: &str) -> String {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let fnv = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let a = mix(fnv);
    let b = mix(a ^ 0x9e37_79b9_7f4a_7c15);
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// A fresh random UUID.
pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The `<10 hex>-` prefix Identity Store ids carry for a `d-` store.
pub(super) fn ids_prefix(store_id: &str) -> String {
    match store_id.strip_prefix("d-") {
        Some(hex) if hex.len() == 10 => hex.to_string(),
        _ => new_uuid().replace('-', "")[..10].to_string(),
    }
}

pub(super) fn valid_uuid(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok() && s.len() == 36
}
