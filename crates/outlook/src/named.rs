//! Named properties: contacts keep their e-mail addresses and appointments their times in
//! properties named by (property set, number), which each file maps to ids from 0x8000 on. The
//! map's GUID and entry streams have the same layout in a PST (the name-to-id map node) and in a
//! `.msg` (`__nameid_version1.0`); only the ones rebuilding needs are resolved.

use std::collections::HashMap;

/// PSETID_Address {00062004-0000-0000-C000-000000000046}, as stored (little-endian fields).
const ADDRESS: [u8; 16] = [0x04, 0x20, 0x06, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46];
/// PSETID_Appointment {00062002-0000-0000-C000-000000000046}.
const APPOINTMENT: [u8; 16] = [0x02, 0x20, 0x06, 0, 0, 0, 0, 0, 0xC0, 0, 0, 0, 0, 0, 0, 0x46];

/// (property set, number, the name rebuilding knows it by).
const KNOWN: &[([u8; 16], u32, &str)] = &[
    (ADDRESS, 0x8083, "email1"),
    (ADDRESS, 0x8093, "email2"),
    (ADDRESS, 0x80A3, "email3"),
    (APPOINTMENT, 0x820D, "start"),
    (APPOINTMENT, 0x820E, "end"),
    (APPOINTMENT, 0x8208, "location"),
    (APPOINTMENT, 0x8215, "all-day"),
];

/// Property id → name, for the known named properties the file maps. `guids` is the GUID stream
/// (16 bytes each, index 3 on), `entries` the entry stream (8 bytes each: the number, then the
/// GUID index shifted left by one with the string flag in bit 0, then the index from 0x8000).
pub fn resolve(guids: &[u8], entries: &[u8]) -> HashMap<u16, &'static str> {
    let mut out = HashMap::new();
    for entry in entries.chunks_exact(8) {
        let number = u32::from_le_bytes(entry[0..4].try_into().unwrap_or_default());
        let guid_and_kind = u16::from_le_bytes([entry[4], entry[5]]);
        let index = u16::from_le_bytes([entry[6], entry[7]]);
        if guid_and_kind & 1 == 1 {
            continue; // named by a string, not a number
        }
        let guid_index = (guid_and_kind >> 1) as usize;
        let Some(guid) = guid_index.checked_sub(3).and_then(|i| guids.get(i * 16..i * 16 + 16)) else { continue };
        if let Some((_, _, name)) = KNOWN.iter().find(|(set, n, _)| set == guid && *n == number) {
            out.insert(0x8000u16.wrapping_add(index), *name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contacts_first_address_is_found_by_its_set_and_number() {
        let guids = [[0u8; 16], ADDRESS].concat();
        // Email1EmailAddress in the second GUID of the stream (index 4), at 0x8000 + 5.
        let mut entries = Vec::new();
        entries.extend(0x8083u32.to_le_bytes());
        entries.extend((4u16 << 1).to_le_bytes());
        entries.extend(5u16.to_le_bytes());
        // The same number in another set, and a string-named one, are not it.
        entries.extend(0x8083u32.to_le_bytes());
        entries.extend((3u16 << 1).to_le_bytes());
        entries.extend(6u16.to_le_bytes());
        entries.extend(0u32.to_le_bytes());
        entries.extend(((4u16 << 1) | 1).to_le_bytes());
        entries.extend(7u16.to_le_bytes());
        assert_eq!(resolve(&guids, &entries), HashMap::from([(0x8005, "email1")]));
    }
}
