import Foundation
import Logging
import OTPServer
import OTPTestSupport
import ServiceLifecycle

/// Runs a `SocketServer` with `router` on a fresh socket in a temporary directory and calls
/// `body` with the socket's path once it serves. Afterwards (also when `body` throws, so a
/// failing test fails instead of hanging) it calls `beforeShutdown`, shuts the server down
/// gracefully and waits until it has stopped. `serverCreated` sees the server before it runs.
func withRunningServer(
    router: any CallRouter, configure: (inout ServerConfiguration) -> Void = { _ in },
    serverCreated: (SocketServer) -> Void = { _ in },
    beforeShutdown: () -> Void = {}, _ body: (_ path: String, _ group: ServiceGroup) async throws -> Void
) async throws {
    let directory = try TemporaryDirectory(prefix: "otpd-srv")
    defer { directory.remove() }
    let path = directory.file("s.sock")
    var configuration = ServerConfiguration(listener: .path(path))
    configure(&configuration)
    let server = SocketServer(
        configuration: configuration, router: router, statistics: ConnectionStatistics(),
        logger: Logger(label: "test"))
    serverCreated(server)
    let group = ServiceGroup(configuration: .init(services: [.init(service: server)], logger: Logger(label: "test")))
    try await withThrowingTaskGroup(of: Void.self) { tasks in
        tasks.addTask { try await group.run() }
        for _ in 0..<200 where !FileManager.default.fileExists(atPath: path) {
            try await Task.sleep(for: .milliseconds(10))
        }
        var failure: (any Error)?
        do { try await body(path, group) } catch { failure = error }
        beforeShutdown()
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        if let failure { throw failure }
    }
}
