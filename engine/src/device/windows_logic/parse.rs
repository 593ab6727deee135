//! The buffers Win32 disk and volume IOCTLs fill, read as plain values (the
//! layouts drawn beside each reader); `windows_ffi.rs` hands them the bytes.

use super::Extent;

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// The NUL-terminated ASCII string at `offset` (0: absent), trimmed.
fn c_string_at(bytes: &[u8], offset: u32) -> String {
    let offset = offset as usize;
    if offset == 0 || offset >= bytes.len() {
        return String::new();
    }
    let tail = &bytes[offset..];
    let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
    String::from_utf8_lossy(&tail[..end]).trim().to_string()
}

/// Vendor, product, removable and bus from a `STORAGE_DEVICE_DESCRIPTOR`:
///
/// ```text
///  0 Version u32   4 Size u32   8 DeviceType u8   9 DeviceTypeModifier u8
/// 10 RemovableMedia u8   11 CommandQueueing u8
/// 12 VendorIdOffset u32   16 ProductIdOffset u32   20 ProductRevisionOffset u32
/// 24 SerialNumberOffset u32   28 BusType u32   32 RawPropertiesLength u32
/// (the strings follow, each at its offset from the start, NUL-terminated)
/// ```
pub(crate) fn parse_device_descriptor(bytes: &[u8]) -> Option<(String, String, bool, u32)> {
    let removable = *bytes.get(10)? != 0;
    let vendor = c_string_at(bytes, u32_at(bytes, 12)?);
    let product = c_string_at(bytes, u32_at(bytes, 16)?);
    let bus = u32_at(bytes, 28)?;
    Some((vendor, product, removable, bus))
}

/// Size and bytes per sector from a `DISK_GEOMETRY_EX`:
///
/// ```text
///  0 Cylinders i64   8 MediaType u32   12 TracksPerCylinder u32
/// 16 SectorsPerTrack u32   20 BytesPerSector u32   24 DiskSize i64   (Data[] follows)
/// ```
pub(crate) fn parse_geometry_ex(bytes: &[u8]) -> Option<(u64, u32)> {
    Some((u64_at(bytes, 24)?, u32_at(bytes, 20)?))
}

/// The extents of a `VOLUME_DISK_EXTENTS`:
///
/// ```text
/// 0 NumberOfDiskExtents u32   (4 bytes padding)
/// 8 + 24 i: DiskNumber u32, (padding), StartingOffset i64, ExtentLength i64
/// ```
pub(crate) fn parse_disk_extents(bytes: &[u8]) -> Vec<Extent> {
    let count = u32_at(bytes, 0).unwrap_or(0) as usize;
    (0..count)
        .map_while(|i| {
            let at = 8 + 24 * i;
            Some(Extent {
                disk: u32_at(bytes, at)?,
                offset: u64_at(bytes, at + 8)?,
                length: u64_at(bytes, at + 16)?,
            })
        })
        .collect()
}

/// The strings of a `REG_MULTI_SZ`-style list (`GetVolumePathNamesForVolumeNameW`).
pub(crate) fn multi_sz(wide: &[u16]) -> Vec<String> {
    wide.split(|c| *c == 0)
        .take_while(|s| !s.is_empty())
        .map(String::from_utf16_lossy)
        .collect()
}
