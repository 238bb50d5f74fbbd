//! Names for MSG_* flags and errno values, as Linux defines them.
//!
//! The flag values are Linux's own (include/linux/socket.h), not the ones in
//! the user's spec table, four of which are wrong (see semantics.md).

/// Every flag nwtrace names, in ascending bit order.
const MSG_FLAGS: &[(u32, &str)] = &[
    (0x1, "MSG_OOB"),
    (0x2, "MSG_PEEK"),
    (0x4, "MSG_DONTROUTE"),
    (0x8, "MSG_CTRUNC"),
    (0x10, "MSG_PROBE"),
    (0x20, "MSG_TRUNC"),
    (0x40, "MSG_DONTWAIT"),
    (0x80, "MSG_EOR"),
    (0x100, "MSG_WAITALL"),
    (0x200, "MSG_FIN"),
    (0x400, "MSG_SYN"),
    (0x800, "MSG_CONFIRM"),
    (0x1000, "MSG_RST"),
    (0x2000, "MSG_ERRQUEUE"),
    (0x4000, "MSG_NOSIGNAL"),
    (0x8000, "MSG_MORE"),
    (0x10000, "MSG_WAITFORONE"),
    (0x40000, "MSG_BATCH"),
    (0x2000000, "MSG_SOCK_DEVMEM"),
    (0x4000000, "MSG_ZEROCOPY"),
    (0x8000000, "MSG_SPLICE_PAGES"),
    (0x20000000, "MSG_FASTOPEN"),
    (0x40000000, "MSG_CMSG_CLOEXEC"),
];

/// Appends `flags` decoded as `MSG_A|MSG_B`, known flags in ascending bit
/// order, then any unknown bits as one hex number. Appends nothing for 0.
pub fn write_msg_flags(out: &mut Vec<u8>, flags: u32) {
    let mut known = 0u32;
    let mut first = true;
    for &(bit, name) in MSG_FLAGS {
        if flags & bit != 0 {
            if !first {
                out.push(b'|');
            }
            out.extend_from_slice(name.as_bytes());
            known |= bit;
            first = false;
        }
    }
    let unknown = flags & !known;
    if unknown != 0 {
        if !first {
            out.push(b'|');
        }
        out.extend_from_slice(format!("{unknown:#x}").as_bytes());
    }
}

/// The symbolic name of an errno value, for x86_64 and arm64 Linux
/// (asm-generic/errno-base.h, asm-generic/errno.h, linux/errno.h).
/// Where two names share a number, the one glibc's strerrorname_np gives.
pub fn errno_name(errno: i32) -> Option<&'static str> {
    let name = match errno {
        1 => "EPERM",
        2 => "ENOENT",
        3 => "ESRCH",
        4 => "EINTR",
        5 => "EIO",
        6 => "ENXIO",
        7 => "E2BIG",
        8 => "ENOEXEC",
        9 => "EBADF",
        10 => "ECHILD",
        11 => "EAGAIN",
        12 => "ENOMEM",
        13 => "EACCES",
        14 => "EFAULT",
        15 => "ENOTBLK",
        16 => "EBUSY",
        17 => "EEXIST",
        18 => "EXDEV",
        19 => "ENODEV",
        20 => "ENOTDIR",
        21 => "EISDIR",
        22 => "EINVAL",
        23 => "ENFILE",
        24 => "EMFILE",
        25 => "ENOTTY",
        26 => "ETXTBSY",
        27 => "EFBIG",
        28 => "ENOSPC",
        29 => "ESPIPE",
        30 => "EROFS",
        31 => "EMLINK",
        32 => "EPIPE",
        33 => "EDOM",
        34 => "ERANGE",
        35 => "EDEADLK",
        36 => "ENAMETOOLONG",
        37 => "ENOLCK",
        38 => "ENOSYS",
        39 => "ENOTEMPTY",
        40 => "ELOOP",
        42 => "ENOMSG",
        43 => "EIDRM",
        44 => "ECHRNG",
        45 => "EL2NSYNC",
        46 => "EL3HLT",
        47 => "EL3RST",
        48 => "ELNRNG",
        49 => "EUNATCH",
        50 => "ENOCSI",
        51 => "EL2HLT",
        52 => "EBADE",
        53 => "EBADR",
        54 => "EXFULL",
        55 => "ENOANO",
        56 => "EBADRQC",
        57 => "EBADSLT",
        59 => "EBFONT",
        60 => "ENOSTR",
        61 => "ENODATA",
        62 => "ETIME",
        63 => "ENOSR",
        64 => "ENONET",
        65 => "ENOPKG",
        66 => "EREMOTE",
        67 => "ENOLINK",
        68 => "EADV",
        69 => "ESRMNT",
        70 => "ECOMM",
        71 => "EPROTO",
        72 => "EMULTIHOP",
        73 => "EDOTDOT",
        74 => "EBADMSG",
        75 => "EOVERFLOW",
        76 => "ENOTUNIQ",
        77 => "EBADFD",
        78 => "EREMCHG",
        79 => "ELIBACC",
        80 => "ELIBBAD",
        81 => "ELIBSCN",
        82 => "ELIBMAX",
        83 => "ELIBEXEC",
        84 => "EILSEQ",
        85 => "ERESTART",
        86 => "ESTRPIPE",
        87 => "EUSERS",
        88 => "ENOTSOCK",
        89 => "EDESTADDRREQ",
        90 => "EMSGSIZE",
        91 => "EPROTOTYPE",
        92 => "ENOPROTOOPT",
        93 => "EPROTONOSUPPORT",
        94 => "ESOCKTNOSUPPORT",
        95 => "EOPNOTSUPP",
        96 => "EPFNOSUPPORT",
        97 => "EAFNOSUPPORT",
        98 => "EADDRINUSE",
        99 => "EADDRNOTAVAIL",
        100 => "ENETDOWN",
        101 => "ENETUNREACH",
        102 => "ENETRESET",
        103 => "ECONNABORTED",
        104 => "ECONNRESET",
        105 => "ENOBUFS",
        106 => "EISCONN",
        107 => "ENOTCONN",
        108 => "ESHUTDOWN",
        109 => "ETOOMANYREFS",
        110 => "ETIMEDOUT",
        111 => "ECONNREFUSED",
        112 => "EHOSTDOWN",
        113 => "EHOSTUNREACH",
        114 => "EALREADY",
        115 => "EINPROGRESS",
        116 => "ESTALE",
        117 => "EUCLEAN",
        118 => "ENOTNAM",
        119 => "ENAVAIL",
        120 => "EISNAM",
        121 => "EREMOTEIO",
        122 => "EDQUOT",
        123 => "ENOMEDIUM",
        124 => "EMEDIUMTYPE",
        125 => "ECANCELED",
        126 => "ENOKEY",
        127 => "EKEYEXPIRED",
        128 => "EKEYREVOKED",
        129 => "EKEYREJECTED",
        130 => "EOWNERDEAD",
        131 => "ENOTRECOVERABLE",
        132 => "ERFKILL",
        133 => "EHWPOISON",
        // Kernel-internal values (include/linux/errno.h) that can still
        // reach a tracer, since it sees the return before the syscall layer
        // translates them.
        512 => "ERESTARTSYS",
        513 => "ERESTARTNOINTR",
        514 => "ERESTARTNOHAND",
        515 => "ENOIOCTLCMD",
        516 => "ERESTART_RESTARTBLOCK",
        517 => "EPROBE_DEFER",
        518 => "EOPENSTALE",
        519 => "ENOPARAM",
        521 => "EBADHANDLE",
        522 => "ENOTSYNC",
        523 => "EBADCOOKIE",
        524 => "ENOTSUPP",
        525 => "ETOOSMALL",
        526 => "ESERVERFAULT",
        527 => "EBADTYPE",
        528 => "EJUKEBOX",
        529 => "EIOCBQUEUED",
        530 => "ERECALLCONFLICT",
        531 => "ENOGRACE",
        _ => return None,
    };
    Some(name)
}

/// Appends the Error field for a negative return value: its errno name, or
/// `E<number>` when Linux has no name for it.
pub fn write_errno(out: &mut Vec<u8>, errno: i32) {
    match errno_name(errno) {
        Some(name) => out.extend_from_slice(name.as_bytes()),
        None => {
            out.push(b'E');
            out.extend_from_slice(itoa::Buffer::new().format(errno).as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(f: u32) -> String {
        let mut out = Vec::new();
        write_msg_flags(&mut out, f);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn flags_use_linux_values_not_the_spec_table() {
        // The four values the spec gets wrong, checked against libc's.
        assert_eq!(libc::MSG_DONTWAIT as u32, 0x40);
        assert_eq!(flags(libc::MSG_DONTWAIT as u32), "MSG_DONTWAIT");
        assert_eq!(flags(0x20), "MSG_TRUNC");
        assert_eq!(flags(libc::MSG_NOSIGNAL as u32), "MSG_NOSIGNAL");
        assert_eq!(flags(0x4000), "MSG_NOSIGNAL");
        assert_eq!(flags(libc::MSG_MORE as u32), "MSG_MORE");
        assert_eq!(flags(0x8000), "MSG_MORE");
        assert_eq!(flags(libc::MSG_ZEROCOPY as u32), "MSG_ZEROCOPY");
        assert_eq!(flags(0x4000000), "MSG_ZEROCOPY");
        assert_eq!(flags(0x8000000), "MSG_SPLICE_PAGES");
    }

    #[test]
    fn flag_table_agrees_with_libc() {
        let libc_values = [
            (libc::MSG_OOB, "MSG_OOB"),
            (libc::MSG_PEEK, "MSG_PEEK"),
            (libc::MSG_DONTROUTE, "MSG_DONTROUTE"),
            (libc::MSG_CTRUNC, "MSG_CTRUNC"),
            (libc::MSG_TRUNC, "MSG_TRUNC"),
            (libc::MSG_DONTWAIT, "MSG_DONTWAIT"),
            (libc::MSG_EOR, "MSG_EOR"),
            (libc::MSG_WAITALL, "MSG_WAITALL"),
            (libc::MSG_FIN, "MSG_FIN"),
            (libc::MSG_SYN, "MSG_SYN"),
            (libc::MSG_CONFIRM, "MSG_CONFIRM"),
            (libc::MSG_RST, "MSG_RST"),
            (libc::MSG_ERRQUEUE, "MSG_ERRQUEUE"),
            (libc::MSG_NOSIGNAL, "MSG_NOSIGNAL"),
            (libc::MSG_MORE, "MSG_MORE"),
            (libc::MSG_WAITFORONE, "MSG_WAITFORONE"),
            (libc::MSG_FASTOPEN, "MSG_FASTOPEN"),
            (libc::MSG_CMSG_CLOEXEC, "MSG_CMSG_CLOEXEC"),
        ];
        for (value, name) in libc_values {
            assert_eq!(flags(value as u32), name, "{value:#x}");
        }
    }

    #[test]
    fn combined_flags_in_ascending_bit_order() {
        assert_eq!(flags(0x4000 | 0x8000), "MSG_NOSIGNAL|MSG_MORE");
        assert_eq!(flags(0x40 | 0x2), "MSG_PEEK|MSG_DONTWAIT");
        assert_eq!(flags(0x100 | 0x20 | 0x1), "MSG_OOB|MSG_TRUNC|MSG_WAITALL");
    }

    #[test]
    fn unknown_bits_are_one_hex_number() {
        assert_eq!(flags(0), "");
        assert_eq!(flags(0x200000), "0x200000");
        assert_eq!(flags(0x2 | 0x200000 | 0x100000), "MSG_PEEK|0x300000");
        assert_eq!(flags(0x80000000), "0x80000000");
    }

    fn errno(e: i32) -> String {
        let mut out = Vec::new();
        write_errno(&mut out, e);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn spec_errnos_have_their_names() {
        assert_eq!(errno(libc::EAGAIN), "EAGAIN");
        assert_eq!(errno(libc::EPIPE), "EPIPE");
        assert_eq!(errno(libc::ECONNABORTED), "ECONNABORTED");
        assert_eq!(errno(libc::ECONNRESET), "ECONNRESET");
        assert_eq!(errno(libc::ETIMEDOUT), "ETIMEDOUT");
        assert_eq!(errno(libc::ECONNREFUSED), "ECONNREFUSED");
        assert_eq!(errno(libc::EHOSTUNREACH), "EHOSTUNREACH");
        assert_eq!(errno(libc::EINPROGRESS), "EINPROGRESS");
    }

    #[test]
    fn every_errno_is_named() {
        assert_eq!(errno(libc::EINTR), "EINTR");
        assert_eq!(errno(libc::ENOTCONN), "ENOTCONN");
        assert_eq!(errno(libc::EMSGSIZE), "EMSGSIZE");
        assert_eq!(errno(libc::ENOBUFS), "ENOBUFS");
        assert_eq!(errno(libc::EINVAL), "EINVAL");
        assert_eq!(errno(libc::EOPNOTSUPP), "EOPNOTSUPP");
        assert_eq!(errno(libc::EDEADLK), "EDEADLK");
        assert_eq!(errno(512), "ERESTARTSYS");
        assert_eq!(errno(516), "ERESTART_RESTARTBLOCK");
        // Cross-check every number 1..=133 against glibc's own names.
        for e in 1..=133 {
            // SAFETY: strerrorname_np returns NULL or a pointer to a static
            // NUL-terminated string owned by glibc.
            let ptr = unsafe { strerrorname_np(e) };
            if ptr.is_null() {
                continue;
            }
            // SAFETY: non-null, static, NUL-terminated (see above).
            let glibc = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_str().unwrap();
            assert_eq!(errno(e), glibc, "errno {e}");
        }
    }

    unsafe extern "C" {
        fn strerrorname_np(errnum: libc::c_int) -> *const libc::c_char;
    }

    #[test]
    fn unknown_errno_is_e_number() {
        assert_eq!(errno(600), "E600");
        assert_eq!(errno(41), "E41");
        assert_eq!(errno(520), "E520");
    }
}
