import CoreMetrics
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import OTPMetrics
import Prometheus
import ServiceLifecycle
import Synchronization

/// The daemon's metrics: swift-metrics bootstrapped with a swift-prometheus registry, whose
/// text `GET /metrics` (``MetricsEndpoint``) and `GetMetrics` (`otpctl metrics`) serve. The
/// instruments themselves are named in `OTPMetrics`.
struct DaemonMetrics: Sendable {
    let registry: PrometheusCollectorRegistry

    /// Bootstraps swift-metrics once for the process, with the histogram buckets of
    /// `OTPMetrics`.
    static func bootstrap() -> DaemonMetrics {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.durationHistogramBuckets = [
            OTPMetrics.callDuration: OTPMetrics.callDurationBuckets,
            OTPMetrics.twilioRequestDuration: OTPMetrics.twilioDurationBuckets,
            OTPMetrics.commitDuration: OTPMetrics.commitDurationBuckets,
        ]
        factory.valueHistogramBuckets = [OTPMetrics.writerBatchSize: OTPMetrics.batchSizeBuckets]
        MetricsSystem.bootstrap(factory)
        // Series that exist before their first event, so a dashboard shows 0, not "no data".
        OTPMetrics.setConnections(0)
        OTPMetrics.setCallsInFlight(0)
        OTPMetrics.setNotificationBacklog(0)
        Counter(label: OTPMetrics.lockouts).increment(by: 0)
        for kind in OTPMetrics.CappedEvent.allCases {
            Counter(label: OTPMetrics.auditEventsCapped, dimensions: [("kind", kind.rawValue)]).increment(by: 0)
        }
        return DaemonMetrics(registry: registry)
    }

    /// The Prometheus text exposition format (0.0.4).
    func text() -> String {
        registry.emitToString()
    }
}

/// Where `[metrics] listen` may point: a loopback address unless the operator allowed others.
enum MetricsAddress {
    /// Splits `host:port` (`[::1]:9464` for IPv6) and refuses a non-loopback host unless
    /// `allowNonLoopback`.
    static func parse(_ text: String, allowNonLoopback: Bool) throws(ConfigurationError) -> (host: String, port: Int) {
        var host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw ConfigurationError(description: "metrics.listen must be host:port, like \"127.0.0.1:9464\"")
            }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":") else {
                throw ConfigurationError(description: "metrics.listen must be host:port, like \"127.0.0.1:9464\"")
            }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard let port = Int(portText), (1...65_535).contains(port), !host.isEmpty else {
            throw ConfigurationError(description: "metrics.listen must be host:port with a port of 1-65535")
        }
        if host == "localhost" { host = "127.0.0.1" }
        guard allowNonLoopback || isLoopback(String(host)) else {
            throw ConfigurationError(
                description:
                    "metrics.listen \(text) is not a loopback address; metrics stay on this host unless metrics.allow_non_loopback = true"
            )
        }
        return (String(host), port)
    }

    static func isLoopback(_ host: String) -> Bool {
        if host == "::1" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}

/// `GET /metrics` over HTTP/1.1 on `[metrics] listen`: the registry's text, nothing else (every
/// other path is 404, every other method 405). Requests are small and answered at once. Any
/// local process can reach the port, so what it may hold is bounded: at most
/// ``maximumConnections`` connections (more are closed at once) and each is closed after
/// ``idleTimeout`` without a request, so idle scrapers cannot use up otpd's file descriptors.
struct MetricsEndpoint: Service {
    static let maximumConnections = 16
    static let idleTimeout = TimeAmount.seconds(10)

    let host: String
    let port: Int
    let metrics: DaemonMetrics
    let logger: Logger

    func run() async throws {
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let metrics = self.metrics
        let open = OpenConnections()
        let channel = try await ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 64)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                guard open.admit(limit: Self.maximumConnections) else { return channel.close() }
                channel.closeFuture.whenComplete { _ in open.remove() }
                return channel.eventLoop.makeCompletedFuture {
                    let pipeline = channel.pipeline.syncOperations
                    try pipeline.addHandler(IdleStateHandler(allTimeout: Self.idleTimeout))
                    try pipeline.configureHTTPServerPipeline(withErrorHandling: true)
                    try pipeline.addHandler(MetricsHTTPHandler(metrics: metrics))
                }
            }
            .bind(host: host, port: port).get()
        logger.info("metrics served", metadata: ["listen": "\(host):\(port)", "path": "/metrics"])
        await withGracefulShutdownHandler {
            try? await channel.closeFuture.get()
        } onGracefulShutdown: {
            channel.close(promise: nil)
        }
        try await group.shutdownGracefully()
    }
}

/// The metrics endpoint's open connections.
final class OpenConnections: Sendable {
    private let count = Atomic<Int>(0)

    /// Counts a new connection unless `limit` are open already.
    func admit(limit: Int) -> Bool {
        if count.add(1, ordering: .relaxed).newValue <= limit { return true }
        count.subtract(1, ordering: .relaxed)
        return false
    }

    func remove() {
        count.subtract(1, ordering: .relaxed)
    }
}

/// Answers one HTTP request at a time on its connection.
final class MetricsHTTPHandler: ChannelInboundHandler, Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let metrics: DaemonMetrics

    init(metrics: DaemonMetrics) {
        self.metrics = metrics
    }

    /// An idle connection (``MetricsEndpoint/idleTimeout``) is closed.
    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if event is IdleStateHandler.IdleStateEvent {
            context.close(promise: nil)
        } else {
            context.fireUserInboundEventTriggered(event)
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard case .head(let head) = unwrapInboundIn(data) else { return }
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let (status, body, type): (HTTPResponseStatus, String, String) =
            switch (head.method, path) {
            case (.GET, "/metrics"), (.HEAD, "/metrics"):
                (.ok, metrics.text(), "text/plain; version=0.0.4; charset=utf-8")
            case (_, "/metrics"): (.methodNotAllowed, "only GET\n", "text/plain; charset=utf-8")
            default: (.notFound, "otpd serves /metrics only\n", "text/plain; charset=utf-8")
            }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: type)
        headers.add(name: "Content-Length", value: "\(body.utf8.count)")
        if status == .methodNotAllowed { headers.add(name: "Allow", value: "GET, HEAD") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))),
            promise: nil)
        if head.method != .HEAD {
            context.write(
                wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(string: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}

/// Keeps the gauges that no single event moves, every 10 s: the WAL's size (SQLite; nil on
/// PostgreSQL) and the daemon's resident memory.
struct PeriodicGauges: Service {
    let databasePath: String?

    func run() async {
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                if let databasePath {
                    let attributes = try? FileManager.default.attributesOfItem(atPath: databasePath + "-wal")
                    OTPMetrics.setWALBytes((attributes?[.size] as? NSNumber)?.intValue ?? 0)
                }
                OTPMetrics.setResidentBytes(ProcessFacts.residentBytes())
                try? await Task.sleep(for: .seconds(10))
            }
        }
    }
}
