#if canImport(Glibc)
    import Glibc
#else
    import Darwin
#endif

/// A new file that will hold a secret (the daemon key, backup codes, the QR code of an
/// authenticator secret): created with `O_CREAT | O_EXCL | O_NOFOLLOW` and mode 0600, so an
/// existing file or a symbolic link is never followed or overwritten; written completely and
/// flushed to disk. The one writer of private files for otpd and otpctl.
public struct NewPrivateFile {
    /// A file that could not be created or written, with the system's reason.
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Where the file is.
    public let path: String
    private let descriptor: Int32

    /// True when something (even a dangling symbolic link) is at `path`.
    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    /// Creates the (empty) file; call before asking otpd, so a bad path costs nothing.
    /// `existsReason` is said when something is at `path` already.
    public static func create(_ path: String, existsReason: String) throws(Failure) -> NewPrivateFile {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let reason = errno == EEXIST ? existsReason : systemError()
            throw Failure(description: "cannot create \(path): \(reason)")
        }
        // The umask can only narrow the mode, but make 0600 explicit.
        _ = fchmod(fd, 0o600)
        return NewPrivateFile(path: path, descriptor: fd)
    }

    /// Writes `bytes`, flushes them to disk and closes the file.
    public func write(_ bytes: [UInt8]) throws(Failure) {
        defer { close(descriptor) }
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { buffer in
                Self.systemWrite(descriptor, buffer.baseAddress, buffer.count)
            }
            if written < 0 {
                if errno == EINTR { continue }
                throw Failure(description: "cannot write \(path): \(Self.systemError())")
            }
            offset += written
        }
        guard fsync(descriptor) == 0 else {
            throw Failure(description: "cannot write \(path): \(Self.systemError())")
        }
    }

    /// Closes and deletes the (still empty) file.
    public func remove() {
        close(descriptor)
        unlink(path)
    }

    private static func systemWrite(_ fd: Int32, _ pointer: UnsafeRawPointer?, _ count: Int) -> Int {
        #if canImport(Glibc)
            Glibc.write(fd, pointer, count)
        #else
            Darwin.write(fd, pointer, count)
        #endif
    }

    private static func systemError() -> String { String(cString: strerror(errno)) }
}
