import Foundation

/// A throw-away certificate authority, made with the `openssl` command (Debian's `openssl`
/// package; `scripts/install-deps.sh` installs it), that issues server certificates, for tests
/// of TLS clients. P-256 keys, valid for two days.
public struct TestCertificateAuthority: Sendable {
    /// The authority's certificate (PEM): the root a client must trust.
    public let certificatePath: String
    private let keyPath: String
    private let fileStem: String

    /// A server certificate and its private key, both PEM.
    public struct Issued: Sendable {
        public let certificatePEM: String
        public let keyPEM: String
    }

    /// Makes the authority's key and self-signed certificate in `directory` (which must exist).
    public init(in directory: String, name: String) throws {
        fileStem = directory + "/" + name.map { $0.isLetter || $0.isNumber ? String($0) : "-" }.joined()
        certificatePath = fileStem + ".crt"
        keyPath = fileStem + ".key"
        try Self.openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", "/CN=\(name)", "-keyout", keyPath, "-out", certificatePath,
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    }

    /// Issues a server certificate for the DNS name `serverName` only (subjectAltName), with a
    /// fresh key.
    public func issue(serverName: String) throws -> Issued {
        let server = fileStem + "-" + serverName
        try Self.openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=\(serverName)", "-keyout", server + ".key", "-out", server + ".csr")
        let extensions = server + ".ext"
        try Data(
            "subjectAltName=DNS:\(serverName)\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n".utf8
        ).write(to: URL(fileURLWithPath: extensions))
        try Self.openssl(
            "x509", "-req", "-in", server + ".csr", "-CA", certificatePath, "-CAkey", keyPath, "-CAcreateserial",
            "-days", "2", "-extfile", extensions, "-out", server + ".crt")
        return Issued(
            certificatePEM: try String(contentsOfFile: server + ".crt", encoding: .utf8),
            keyPEM: try String(contentsOfFile: server + ".key", encoding: .utf8))
    }

    private static func openssl(_ arguments: String...) throws {
        let command = ["/usr/bin/openssl"] + arguments
        let result: CommandResult
        do {
            result = try runCommand(command, environment: ProcessInfo.processInfo.environment, directory: nil)
        } catch {
            throw TestCertificateError(description: "\(error)")
        }
        guard result.status == 0 else {
            throw TestCertificateError(
                description: "openssl \(arguments.prefix(2).joined(separator: " ")) failed (\(result.status)): "
                    + result.standardError)
        }
    }
}

/// `openssl` failed while making test certificates.
public struct TestCertificateError: Error, CustomStringConvertible {
    public let description: String
}
