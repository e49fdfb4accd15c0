//! The image of the containers that hold a replica's network namespace ([`super::holders`]):
//! one static program that waits for SIGTERM or SIGINT and exits, and nothing else. Built here,
//! from bytes, because there is no registry to pull a pause image from, and imported into the
//! engine once (`docker import`, a few KB).
//!
//! The program is 70 bytes of x86-64 machine code in a minimal ELF executable (one loadable
//! segment). As PID 1 of its container it gets no signal it has no handler for, so it blocks
//! SIGTERM and SIGINT and waits for them with `rt_sigtimedwait` (a blocked signal is queued even
//! for PID 1): `docker stop` ends it at once. Other architectures get no holder image, and
//! their replicas join the deployment network directly.

use sha2::{Digest, Sha256};

/// The repository of the holder image; its tag is a digest of the program.
pub const HOLDER_REPOSITORY: &str = "berth-holder";
/// The label every holder image carries, so an operator can tell what made it.
pub const HOLDER_IMAGE_LABEL: &str = "berth.holder-image";
/// Where the program sits in the image.
pub const PROGRAM_PATH: &str = "/wait";

/// ```text
///   mov eax, 14          ; rt_sigprocmask(SIG_BLOCK, &set, NULL, 8)
///   xor edi, edi
///   lea rsi, [rip+set]
///   xor edx, edx
///   mov r10d, 8
///   syscall
/// wait:
///   mov eax, 128         ; rt_sigtimedwait(&set, NULL, NULL, 8)
///   lea rdi, [rip+set]
///   xor esi, esi
///   xor edx, edx
///   mov r10d, 8
///   syscall
///   test rax, rax        ; interrupted (-EINTR): wait again
///   js wait
///   mov eax, 231         ; exit_group(0)
///   xor edi, edi
///   syscall
/// set:
///   .quad 0x4002         ; SIGINT (2) and SIGTERM (15)
/// ```
#[cfg(target_arch = "x86_64")]
const PROGRAM_X86_64: [u8; 70] = [
    0xb8, 0x0e, 0x00, 0x00, 0x00, 0x31, 0xff, 0x48, 0x8d, 0x35, 0x30, 0x00, 0x00, 0x00, 0x31, 0xd2,
    0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05, 0xb8, 0x80, 0x00, 0x00, 0x00, 0x48, 0x8d, 0x3d,
    0x1a, 0x00, 0x00, 0x00, 0x31, 0xf6, 0x31, 0xd2, 0x41, 0xba, 0x08, 0x00, 0x00, 0x00, 0x0f, 0x05,
    0x48, 0x85, 0xc0, 0x78, 0xe3, 0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05, 0x02, 0x40,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
];

/// Where the executable is loaded (the usual base of a non-PIE executable).
const LOAD_ADDRESS: u64 = 0x40_0000;
const ELF_HEADER_SIZE: u16 = 64;
const PROGRAM_HEADER_SIZE: u16 = 56;
const EM_X86_64: u16 = 62;

/// A static ELF64 (little-endian) executable whose one segment is the headers and `code`,
/// entered at the code's first byte.
fn elf(machine: u16, code: &[u8]) -> Vec<u8> {
    let code_offset = u64::from(ELF_HEADER_SIZE + PROGRAM_HEADER_SIZE);
    let size = code_offset + code.len() as u64;
    let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    // e_ident: magic, 64-bit, little-endian, version 1, System V ABI, padding.
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // e_type: ET_EXEC
    out.extend_from_slice(&machine.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes()); // e_version
    out.extend_from_slice(&(LOAD_ADDRESS + code_offset).to_le_bytes()); // e_entry
    out.extend_from_slice(&u64::from(ELF_HEADER_SIZE).to_le_bytes()); // e_phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff: no sections
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&ELF_HEADER_SIZE.to_le_bytes());
    out.extend_from_slice(&PROGRAM_HEADER_SIZE.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // The one PT_LOAD segment: the whole file, readable and executable.
    out.extend_from_slice(&1u32.to_le_bytes()); // p_type: PT_LOAD
    out.extend_from_slice(&5u32.to_le_bytes()); // p_flags: R + X
    out.extend_from_slice(&0u64.to_le_bytes()); // p_offset
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_vaddr
    out.extend_from_slice(&LOAD_ADDRESS.to_le_bytes()); // p_paddr
    out.extend_from_slice(&size.to_le_bytes()); // p_filesz
    out.extend_from_slice(&size.to_le_bytes()); // p_memsz
    out.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    out.extend_from_slice(code);
    out
}

/// The holder program for this machine's architecture, if Berth has one for it.
pub fn program() -> Option<Vec<u8>> {
    #[cfg(target_arch = "x86_64")]
    {
        Some(elf(EM_X86_64, &PROGRAM_X86_64))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// `berth-holder:<first 12 hex digits of the program's SHA-256>`: a changed program is a new
/// image, and every installation on an engine shares the same one.
pub fn reference(program: &[u8]) -> String {
    let digest = hex::encode(Sha256::digest(program));
    format!("{HOLDER_REPOSITORY}:{}", &digest[..12])
}

/// The root file system `docker import` takes: the program, mode 0755, owned by root.
pub fn root_fs(program: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(program.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    builder.append_data(&mut header, PROGRAM_PATH.trim_start_matches('/'), program)?;
    builder.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_has_one_segment_entered_at_the_code() {
        let bytes = elf(EM_X86_64, &[0x90; 3]);
        assert_eq!(&bytes[..4], b"\x7fELF");
        assert_eq!(bytes.len(), 64 + 56 + 3);
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(u64_at(24), LOAD_ADDRESS + 120, "entry");
        assert_eq!(u64_at(32), 64, "program headers follow the ELF header");
        assert_eq!(u64_at(64 + 32), 123, "the segment is the whole file");
    }

    #[test]
    fn the_reference_names_the_program() {
        let a = reference(b"one");
        assert!(a.starts_with("berth-holder:"));
        assert_eq!(a.len(), "berth-holder:".len() + 12);
        assert_ne!(a, reference(b"two"));
    }

    /// Runs the real program: it waits, and SIGTERM ends it with status 0 at once.
    #[cfg(target_arch = "x86_64")]
    #[test]
    #[allow(clippy::disallowed_methods)] // a plain test thread: no runtime to block
    fn the_program_waits_and_exits_on_sigterm() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wait");
        std::fs::write(&path, program().unwrap()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut child = std::process::Command::new(&path).spawn().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert!(child.try_wait().unwrap().is_none(), "it waits");
        let pid = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{status:?}");
    }

    #[test]
    fn the_root_fs_holds_the_program_alone() {
        let program = b"\x7fELF...".to_vec();
        let tar = root_fs(&program).unwrap();
        let mut archive = tar::Archive::new(&tar[..]);
        let entries: Vec<_> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                )
            })
            .collect();
        assert_eq!(entries, vec![("wait".to_owned(), 0o755)]);
    }
}
