import Foundation
import OTPFiles

#if canImport(Glibc)
    import Glibc
#endif

/// The daemon's 32-byte master key: it keys the code hashes and encrypts TOTP secrets.
/// It never lives in the database, so a stolen database alone reveals no code or secret.
enum DaemonKey {
    static let length = 32

    /// Where the key is read from when no path is configured: systemd's credential directory
    /// when present (`LoadCredential=otpd.key:...`), otherwise `otpd.key` in the working directory.
    static func defaultPath(environment: [String: String]) -> String {
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            return directory + "/otpd.key"
        }
        return "otpd.key"
    }

    /// Reads the key at `path`, creating it (mode 0600, from the OS random generator) when it
    /// does not exist. Refuses a key file readable by group or others, or of the wrong size.
    static func loadOrCreate(path: String, credentialsDirectory: String? = nil) throws(ConfigurationError) -> [UInt8] {
        var info = stat()
        if stat(path, &info) != 0 {
            guard errno == ENOENT else {
                throw ConfigurationError(
                    description: "cannot read key file \(path): \(String(cString: strerror(errno)))")
            }
            return try create(path: path)
        }
        guard info.st_mode & S_IFMT == S_IFREG else {
            throw ConfigurationError(description: "key file \(path) is not a regular file")
        }
        guard isPrivate(mode: info.st_mode, path: path, credentialsDirectory: credentialsDirectory) else {
            throw ConfigurationError(
                description:
                    "key file \(path) is readable by group or others (mode \(String(info.st_mode & 0o777, radix: 8))); chmod 600 it"
            )
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ConfigurationError(description: "cannot read key file \(path)")
        }
        guard data.count == length else {
            throw ConfigurationError(
                description: "key file \(path) must hold exactly \(length) bytes, not \(data.count)")
        }
        return [UInt8](data)
    }

    /// Whether a secret file's mode keeps it to its owner. systemd's credentials are
    /// root-owned 0400 plus an ACL entry for the service's uid, which stat shows as group-read
    /// (0440); inside `$CREDENTIALS_DIRECTORY` that bit is tolerated, nowhere else.
    static func isPrivate(mode: mode_t, path: String, credentialsDirectory: String?) -> Bool {
        let inCredentials = credentialsDirectory.map { path.hasPrefix($0 + "/") } ?? false
        let allowedBits: mode_t = inCredentials ? 0o040 : 0
        return mode & 0o077 & ~allowedBits == 0
    }

    private static func create(path: String) throws(ConfigurationError) -> [UInt8] {
        var key = [UInt8](repeating: 0, count: length)
        var generator = SystemRandomNumberGenerator()
        for i in key.indices { key[i] = UInt8.random(in: .min ... .max, using: &generator) }
        do throws(NewPrivateFile.Failure) {
            let file = try NewPrivateFile.create(path, existsReason: "another process created it meanwhile")
            do throws(NewPrivateFile.Failure) {
                try file.write(key)
            } catch {
                unlink(path)  // half a key would be refused at the next start anyway
                throw error
            }
        } catch {
            throw ConfigurationError(description: "key file: \(error)")
        }
        return key
    }
}
