import Foundation
import OTPPostgres
import OTPTestSupport
import Testing

/// `[storage] url` and `password_file` for PostgreSQL: what is accepted, and what is refused
/// with a message that names the problem and never echoes a password.
@Suite("PostgreSQL settings")
struct PostgresSettingsTests {
    @Test func aUnixSocketURL() throws {
        let settings = try PostgresSettings(url: "postgresql://otpd@/otpd?host=/run/postgresql&port=5433")
        #expect(settings.endpoint == .unixSocket(path: "/run/postgresql/.s.PGSQL.5433"))
        #expect(settings.user == "otpd" && settings.database == "otpd")
        #expect(settings.tls == .disable)
        #expect(settings.redactedURL == "postgresql://otpd@/otpd?host=/run/postgresql&port=5433")
    }

    @Test func aTCPURLChecksTheCertificateUnlessToldOtherwise() throws {
        let strict = try PostgresSettings(url: "postgresql://otpd@db.internal/otpd")
        #expect(strict.endpoint == .tcp(host: "db.internal", port: 5432))
        #expect(strict.tls == .verifyFull)
        let relaxed = try PostgresSettings(url: "postgres://otpd@10.0.0.5:6432/shop?sslmode=require")
        #expect(relaxed.endpoint == .tcp(host: "10.0.0.5", port: 6432))
        #expect(relaxed.tls == .require)
        #expect(try PostgresSettings(url: "postgresql://otpd@db/otpd?sslmode=disable").tls == .disable)
        let privateCA = try PostgresSettings(url: "postgresql://otpd@db/otpd?sslrootcert=/etc/otpd/ca.pem")
        #expect(privateCA.rootCertificatePath == "/etc/otpd/ca.pem" && privateCA.tls == .verifyFull)
    }

    /// What otpd's start-up log warns about: every TCP mode that lets someone on the path in;
    /// nothing for verify-full or a Unix socket.
    @Test func aConnectionAnAttackerOnThePathCouldReadOrImpersonateIsNamed() throws {
        #expect(try PostgresSettings(url: "postgresql://otpd@db/otpd").tlsWeakness == nil)
        #expect(try PostgresSettings(url: "postgresql://otpd@/otpd?host=/run/postgresql").tlsWeakness == nil)
        let require = try PostgresSettings(url: "postgresql://otpd@db/otpd?sslmode=require").tlsWeakness
        #expect(require?.contains("pose as the database") == true)
        let disable = try PostgresSettings(url: "postgresql://otpd@db/otpd?sslmode=disable").tlsWeakness
        #expect(disable?.contains("unencrypted") == true)
    }

    @Test(arguments: [
        ("postgresql://otpd:hunter2@db/otpd", "must not hold a password"),
        ("mysql://otpd@db/otpd", "postgresql:// URL"),
        ("postgresql://db/otpd", "must name the user"),
        ("postgresql://otpd@db/", "must name the database"),
        ("postgresql://otpd@/otpd", "must name a host"),
        ("postgresql://otpd@/otpd?host=run/postgresql", "absolute socket directory"),
        ("postgresql://otpd@db/otpd?host=/run/postgresql", "both a host and a socket directory"),
        ("postgresql://otpd@/otpd?host=/run/postgresql&sslmode=require", "not available over a Unix socket"),
        ("postgresql://otpd@db/otpd?sslmode=prefer", "sslmode must be"),
        ("postgresql://otpd@db/otpd?application_name=x", "unknown parameter application_name"),
        ("postgresql://otpd@db:70000/otpd", "port"),
        ("postgresql://otpd@db/otpd?sslmode=require&sslrootcert=/ca.pem", "sslrootcert needs"),
    ])
    func refused(url: String, message: String) {
        #expect {
            _ = try PostgresSettings(url: url)
        } throws: { error in
            let description = (error as? PostgresSettingsError)?.description ?? ""
            return description.contains(message) && !description.contains("hunter2")
        }
    }

    @Test func thePasswordFileMustBePrivate() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("password")
        try "s3cret\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o600)
        #expect(try PostgresSettings.readPassword(path: path) == "s3cret")
        chmod(path, 0o640)
        #expect(throws: PostgresSettingsError.self) { try PostgresSettings.readPassword(path: path) }
        chmod(path, 0o600)
        try "\n".write(toFile: path, atomically: false, encoding: .utf8)
        #expect(throws: PostgresSettingsError.self) { try PostgresSettings.readPassword(path: path) }
        #expect(throws: PostgresSettingsError.self) {
            try PostgresSettings.readPassword(path: directory.file("missing"))
        }
    }
}
