//! The Win32 calls of the Windows backend, and its only unsafe code.
//!
//! Each method of [`Api`] is one call, or a short fixed sequence, whose results go
//! back to `windows_logic.rs` as plain values; the structures the kernel fills are
//! parsed there (`windows_logic/parse.rs`), from bytes, at their documented offsets. Files and handles are
//! opened through std's `OpenOptions` (`access_mode`, `share_mode`, `custom_flags`),
//! so the handles are closed by `File`'s drop.
//!
//! The safety argument is the same for every call: each pointer handed to Windows
//! is to a local buffer (or a `File`'s handle) that outlives the synchronous call,
//! with its true length in bytes or UTF-16 units; Windows writes at most that much
//! and keeps no reference. No handle is opened for overlapped I/O, so no call
//! returns before it is done.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::windows::fs::OpenOptionsExt;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use std::ptr::{null, null_mut};
use std::time::Duration;

use windows_sys::Win32::Foundation::{
    ERROR_MORE_DATA, ERROR_NO_MORE_FILES, HANDLE, INVALID_HANDLE_VALUE,
};
use windows_sys::Win32::Security::{
    GetTokenInformation, TokenElevation, TOKEN_ELEVATION, TOKEN_QUERY,
};
use windows_sys::Win32::Storage::FileSystem::{
    FindFirstVolumeW, FindNextVolumeW, FindVolumeClose, GetFileAttributesW, GetVolumeInformationW,
    GetVolumePathNamesForVolumeNameW, QueryDosDeviceW, FILE_FLAG_NO_BUFFERING,
    FILE_FLAG_WRITE_THROUGH, FILE_SHARE_READ, FILE_SHARE_WRITE, INVALID_FILE_ATTRIBUTES,
    IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS,
};
use windows_sys::Win32::System::Ioctl::{
    FSCTL_DISMOUNT_VOLUME, FSCTL_LOCK_VOLUME, IOCTL_DISK_DELETE_DRIVE_LAYOUT,
    IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, IOCTL_DISK_IS_WRITABLE, IOCTL_DISK_UPDATE_PROPERTIES,
    IOCTL_STORAGE_QUERY_PROPERTY,
};
use windows_sys::Win32::System::Registry::{
    RegCloseKey, RegGetValueW, RegOpenKeyExW, HKEY, HKEY_LOCAL_MACHINE, KEY_READ, RRF_RT_REG_SZ,
};
use windows_sys::Win32::System::SystemInformation::GetSystemWindowsDirectoryW;
use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};
use windows_sys::Win32::System::IO::DeviceIoControl;

use super::windows_logic::{
    code, disk_path, multi_sz, parse_device_descriptor, parse_disk_extents, parse_geometry_ex,
    DiskFacts, RawDisk, SystemFacts, VolumeFacts, Win32, MAX_DISKS,
};
use crate::medium::{read_full_at, write_all_at};

/// The real Win32 calls.
pub(crate) struct Api;

/// `s` as a NUL-terminated UTF-16 string.
fn wide(s: &str) -> Vec<u16> {
    s.encode_utf16().chain(Some(0)).collect()
}

/// The UTF-16 string up to the first NUL.
fn from_wide(buf: &[u16]) -> String {
    let end = buf.iter().position(|c| *c == 0).unwrap_or(buf.len());
    String::from_utf16_lossy(&buf[..end])
}

/// `DeviceIoControl` with byte buffers; returns the bytes written to `out`.
fn ioctl(file: &File, control: u32, input: &[u8], out: &mut [u8]) -> io::Result<usize> {
    let mut returned = 0u32;
    // SAFETY: see the module documentation; `input` and `out` are read and
    // written only within their lengths, and `returned` is a local.
    let ok = unsafe {
        DeviceIoControl(
            file.as_raw_handle() as HANDLE,
            control,
            if input.is_empty() {
                null()
            } else {
                input.as_ptr().cast::<c_void>()
            },
            input.len() as u32,
            if out.is_empty() {
                null_mut()
            } else {
                out.as_mut_ptr().cast::<c_void>()
            },
            out.len() as u32,
            &mut returned,
            null_mut(),
        )
    };
    if ok == 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(returned as usize)
    }
}

/// Opens a disk or volume with neither read nor write access: enough for the
/// queries, and allowed without administrator rights.
fn open_for_query(path: &str) -> io::Result<File> {
    OpenOptions::new()
        .access_mode(0)
        .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
        .open(path)
}

/// `\\?\Volume{GUID}\` as a path `CreateFileW` opens the volume itself with (no
/// trailing backslash, which would name its root directory).
fn volume_device_path(name: &str) -> String {
    name.trim_end_matches('\\').to_string()
}

impl Api {
    fn mount_points(name: &[u16]) -> Vec<String> {
        let mut buf = vec![0u16; 256];
        loop {
            let mut needed = 0u32;
            // SAFETY: see the module documentation.
            let ok = unsafe {
                GetVolumePathNamesForVolumeNameW(
                    name.as_ptr(),
                    buf.as_mut_ptr(),
                    buf.len() as u32,
                    &mut needed,
                )
            };
            if ok != 0 {
                return multi_sz(&buf);
            }
            if io::Error::last_os_error().raw_os_error() != Some(ERROR_MORE_DATA as i32)
                || needed as usize <= buf.len()
            {
                return Vec::new();
            }
            buf = vec![0u16; needed as usize];
        }
    }

    fn nt_device(name: &str) -> String {
        // QueryDosDeviceW takes `Volume{GUID}`, without `\\?\` and the backslash.
        let short = wide(name.trim_start_matches(r"\\?\").trim_end_matches('\\'));
        let mut buf = [0u16; 512];
        // SAFETY: see the module documentation.
        let n = unsafe { QueryDosDeviceW(short.as_ptr(), buf.as_mut_ptr(), buf.len() as u32) };
        if n == 0 {
            String::new()
        } else {
            from_wide(&buf)
        }
    }

    fn exists(path: &str) -> bool {
        let path = wide(path);
        // SAFETY: see the module documentation.
        unsafe { GetFileAttributesW(path.as_ptr()) != INVALID_FILE_ATTRIBUTES }
    }

    /// A BitLocker-locked volume refuses to name its file system with
    /// `FVE_E_LOCKED_VOLUME`.
    fn bitlocker_locked(name: &[u16]) -> bool {
        let mut fs_name = [0u16; 64];
        // SAFETY: see the module documentation; the other outputs are not asked for.
        let ok = unsafe {
            GetVolumeInformationW(
                name.as_ptr(),
                null_mut(),
                0,
                null_mut(),
                null_mut(),
                null_mut(),
                fs_name.as_mut_ptr(),
                fs_name.len() as u32,
            )
        };
        ok == 0 && io::Error::last_os_error().raw_os_error() == Some(code::FVE_LOCKED_VOLUME)
    }

    fn volume(name: String) -> VolumeFacts {
        let wide_name = wide(&name);
        let mount_points = Self::mount_points(&wide_name);
        let extents = open_for_query(&volume_device_path(&name))
            .and_then(|volume| {
                let mut out = vec![0u8; 8 + 24 * 32];
                let n = ioctl(&volume, IOCTL_VOLUME_GET_VOLUME_DISK_EXTENTS, &[], &mut out)?;
                Ok(parse_disk_extents(&out[..n]))
            })
            // CD drives and some virtual volumes have no disk extents.
            .unwrap_or_default();
        let page_file = mount_points.iter().any(|m| {
            Self::exists(&format!("{m}pagefile.sys")) || Self::exists(&format!("{m}swapfile.sys"))
        });
        VolumeFacts {
            device: Self::nt_device(&name),
            bitlocker_locked: Self::bitlocker_locked(&wide_name),
            name,
            mount_points,
            extents,
            page_file,
        }
    }

    fn elevated() -> bool {
        let mut token: HANDLE = null_mut();
        // SAFETY: see the module documentation; GetCurrentProcess is a pseudo-handle.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
            return false;
        }
        // SAFETY: OpenProcessToken succeeded, so `token` is a handle we own; the
        // OwnedHandle closes it.
        let token = unsafe { OwnedHandle::from_raw_handle(token as _) };
        let mut elevation = TOKEN_ELEVATION { TokenIsElevated: 0 };
        let mut returned = 0u32;
        // SAFETY: see the module documentation.
        let ok = unsafe {
            GetTokenInformation(
                token.as_raw_handle() as HANDLE,
                TokenElevation,
                (&mut elevation as *mut TOKEN_ELEVATION).cast::<c_void>(),
                size_of::<TOKEN_ELEVATION>() as u32,
                &mut returned,
            )
        };
        ok != 0 && elevation.TokenIsElevated != 0
    }

    fn system_partition() -> Option<String> {
        let key = wide(r"SYSTEM\Setup");
        let value = wide("SystemPartition");
        let mut buf = [0u16; 512];
        let mut bytes = (buf.len() * 2) as u32;
        // SAFETY: see the module documentation; `bytes` is the buffer's size in bytes.
        let status = unsafe {
            RegGetValueW(
                HKEY_LOCAL_MACHINE,
                key.as_ptr(),
                value.as_ptr(),
                RRF_RT_REG_SZ,
                null_mut(),
                buf.as_mut_ptr().cast::<c_void>(),
                &mut bytes,
            )
        };
        (status == 0)
            .then(|| from_wide(&buf))
            .filter(|s| !s.is_empty())
    }

    /// Wine keeps its own settings under `HKLM\Software\Wine`; Windows has no such key.
    fn is_wine() -> bool {
        let key = wide(r"Software\Wine");
        let mut opened: HKEY = null_mut();
        // SAFETY: see the module documentation; `opened` is a local.
        let status =
            unsafe { RegOpenKeyExW(HKEY_LOCAL_MACHINE, key.as_ptr(), 0, KEY_READ, &mut opened) };
        if status != 0 {
            return false;
        }
        // SAFETY: the key was opened above and is closed once.
        unsafe { RegCloseKey(opened) };
        true
    }
}

impl Win32 for Api {
    type Volume = File;
    type Disk = File;

    fn disk_numbers(&self) -> Vec<u32> {
        (0..MAX_DISKS)
            .filter(
                |n| match open_for_query(&disk_path(*n).display().to_string()) {
                    Ok(_) => true,
                    Err(e) => !matches!(
                        e.raw_os_error(),
                        Some(code::FILE_NOT_FOUND | code::PATH_NOT_FOUND)
                    ),
                },
            )
            .collect()
    }

    fn disk(&self, number: u32) -> io::Result<DiskFacts> {
        let disk = open_for_query(&disk_path(number).display().to_string())?;
        // STORAGE_PROPERTY_QUERY { StorageDeviceProperty, PropertyStandardQuery, … }.
        let query = [0u8; 12];
        let mut descriptor = vec![0u8; 1024];
        let n = ioctl(&disk, IOCTL_STORAGE_QUERY_PROPERTY, &query, &mut descriptor)?;
        let (vendor, product, removable, bus) = parse_device_descriptor(&descriptor[..n])
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short STORAGE_DEVICE_DESCRIPTOR",
                )
            })?;
        let mut geometry = [0u8; 256];
        let n = ioctl(&disk, IOCTL_DISK_GET_DRIVE_GEOMETRY_EX, &[], &mut geometry)?;
        let (size, sector_size) = parse_geometry_ex(&geometry[..n])
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "short DISK_GEOMETRY_EX"))?;
        let read_only = matches!(
            ioctl(&disk, IOCTL_DISK_IS_WRITABLE, &[], &mut []),
            Err(e) if e.raw_os_error() == Some(code::WRITE_PROTECT)
        );
        Ok(DiskFacts {
            number,
            vendor,
            product,
            bus,
            removable,
            size,
            sector_size,
            read_only,
        })
    }

    fn volumes(&self) -> io::Result<Vec<VolumeFacts>> {
        let mut buf = [0u16; 64];
        // SAFETY: see the module documentation.
        let find = unsafe { FindFirstVolumeW(buf.as_mut_ptr(), buf.len() as u32) };
        if find == INVALID_HANDLE_VALUE {
            return Err(io::Error::last_os_error());
        }
        let mut volumes = Vec::new();
        let end = loop {
            volumes.push(Self::volume(from_wide(&buf)));
            // SAFETY: see the module documentation; `find` is open until below.
            if unsafe { FindNextVolumeW(find, buf.as_mut_ptr(), buf.len() as u32) } == 0 {
                break io::Error::last_os_error();
            }
        };
        // SAFETY: `find` came from FindFirstVolumeW and is closed once.
        unsafe { FindVolumeClose(find) };
        match end.raw_os_error() {
            Some(c) if c == ERROR_NO_MORE_FILES as i32 => Ok(volumes),
            _ => Err(end),
        }
    }

    fn system(&self) -> SystemFacts {
        let mut buf = [0u16; 512];
        // SAFETY: see the module documentation.
        let n = unsafe { GetSystemWindowsDirectoryW(buf.as_mut_ptr(), buf.len() as u32) };
        SystemFacts {
            windows_dir: if n == 0 {
                String::new()
            } else {
                from_wide(&buf)
            },
            system_partition: Self::system_partition(),
            elevated: Self::elevated(),
            wine: Self::is_wine(),
        }
    }

    fn open_volume(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .open(volume_device_path(name))
    }

    fn lock_volume(&self, volume: &File) -> io::Result<()> {
        ioctl(volume, FSCTL_LOCK_VOLUME, &[], &mut []).map(drop)
    }

    fn dismount_volume(&self, volume: &File) -> io::Result<()> {
        ioctl(volume, FSCTL_DISMOUNT_VOLUME, &[], &mut []).map(drop)
    }

    fn open_disk(&self, number: u32) -> io::Result<File> {
        // Unbuffered: reads come from the card, not the cache (the read-back
        // means nothing otherwise); write-through: a completed write is on it.
        OpenOptions::new()
            .read(true)
            .write(true)
            .share_mode(FILE_SHARE_READ | FILE_SHARE_WRITE)
            .custom_flags(FILE_FLAG_NO_BUFFERING | FILE_FLAG_WRITE_THROUGH)
            .open(disk_path(number))
    }

    fn delete_layout(&self, disk: &File) -> io::Result<()> {
        ioctl(disk, IOCTL_DISK_DELETE_DRIVE_LAYOUT, &[], &mut []).map(drop)
    }

    fn update_properties(&self, disk: &File) -> io::Result<()> {
        ioctl(disk, IOCTL_DISK_UPDATE_PROPERTIES, &[], &mut []).map(drop)
    }

    fn pause(&self, time: Duration) {
        std::thread::sleep(time);
    }
}

impl RawDisk for File {
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        write_all_at(self, buf, offset)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        read_full_at(self, buf, offset)
    }
    fn flush(&self) -> io::Result<()> {
        self.sync_all()
    }
}
