// swift-tools-version: 6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "otpd",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "otpd", targets: ["otpd"]),
        .executable(name: "otpctl", targets: ["otpctl"]),
        .library(name: "OTPClient", targets: ["OTPClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
    ],
    targets: [
        // C: system libraries, generated protobuf-c code, and a tiny POSIX shim.
        .systemLibrary(
            name: "CProtobufC", pkgConfig: "libprotobuf-c",
            providers: [.apt(["libprotobuf-c-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(
            name: "CQRencode", pkgConfig: "libqrencode",
            providers: [.apt(["libqrencode-dev"])]),
        .target(name: "COTPProto", dependencies: ["CProtobufC"]),
        .target(name: "COTPSys"),

        // Swift modules, dependencies pointing one way (see ARCHITECTURE.md).
        .target(
            name: "OTPProtocol", dependencies: ["COTPProto", "CProtobufC"],
            swiftSettings: strictSettings),
        .target(name: "OTPFiles", swiftSettings: strictSettings),
        // The catalogue of metrics (names, labels, buckets) every module records to.
        .target(
            name: "OTPMetrics", dependencies: [.product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: strictSettings),
        .target(
            name: "OTPCore",
            dependencies: [
                "OTPMetrics",
                .product(name: "Crypto", package: "swift-crypto"), .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "OTPStore",
            dependencies: ["OTPCore", "OTPMetrics", "CSQLite", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strictSettings),
        // The domain's storage on PostgreSQL, for several daemons sharing one database.
        .target(
            name: "OTPPostgres",
            dependencies: [
                "OTPCore", "OTPMetrics",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "OTPSMS",
            dependencies: [
                "OTPCore", "OTPMetrics",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "OTPServer",
            dependencies: [
                "OTPProtocol", "OTPCore", "OTPMetrics", "COTPSys",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings),
        .target(
            name: "OTPClient",
            dependencies: [
                "OTPProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "otpd",
            dependencies: [
                "OTPServer", "OTPProtocol", "OTPStore", "OTPPostgres", "OTPSMS", "OTPCore", "OTPFiles", "OTPMetrics",
                "COTPSys",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: strictSettings),
        .executableTarget(
            name: "otpctl",
            dependencies: [
                "OTPClient", "OTPFiles", "CQRencode",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),

        .executableTarget(
            name: "otpbench",
            dependencies: [
                "OTPClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strictSettings),

        // The SwiftNIO reference server of scripts/bench.sh (between the C echo and otpd).
        .executableTarget(
            name: "nio-echo",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/nio-echo",
            swiftSettings: strictSettings),

        // The fuzz targets (scripts/fuzz.sh) and their harnesses, which the unit tests also run.
        // The decoders: frames, envelopes and every message type.
        .target(
            name: "DecoderFuzzHarness", dependencies: ["OTPProtocol"], path: "Fuzz/Harness",
            swiftSettings: strictSettings),
        .executableTarget(
            name: "otpfuzz", dependencies: ["DecoderFuzzHarness"], path: "Fuzz/otpfuzz",
            swiftSettings: strictSettings),
        // The connection fuzz target: whole connections (several frames, reads cut anywhere,
        // half-close, the frame timeout) fed to the connection handler on an EmbeddedChannel.
        .target(
            name: "ConnectionFuzzHarness",
            dependencies: [
                "OTPServer", "OTPProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            path: "Fuzz/ConnectionHarness",
            swiftSettings: strictSettings),
        .executableTarget(
            name: "otpfuzz-connection", dependencies: ["ConnectionFuzzHarness"], path: "Fuzz/otpfuzz-connection",
            swiftSettings: strictSettings),

        // Tests.
        // A Twilio stand-in (HTTP on 127.0.0.1) shared by the SMS and integration tests.
        .target(
            name: "TwilioStandIn",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            path: "Tests/TwilioStandIn",
            swiftSettings: strictSettings),
        // The test doubles the test targets share: a seeded random source, a manual clock, a
        // temporary directory.
        .target(
            name: "OTPTestSupport",
            dependencies: ["OTPCore", "OTPProtocol", .product(name: "Logging", package: "swift-log")],
            path: "Tests/OTPTestSupport",
            swiftSettings: strictSettings),
        .testTarget(
            name: "OTPSMSTests",
            dependencies: [
                "OTPSMS", "OTPCore", "OTPTestSupport", "TwilioStandIn", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OTPProtocolTests", dependencies: ["OTPProtocol", "DecoderFuzzHarness"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OTPCoreTests", dependencies: ["OTPCore", "OTPTestSupport"],
            // The RFC 4226 and RFC 6238 test vectors, read from the source tree by the tests.
            exclude: ["Vectors"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OTPStoreTests",
            dependencies: [
                "OTPStore", "OTPPostgres", "OTPCore", "OTPTestSupport", "CSQLite",
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "OTPServerTests",
            dependencies: [
                "OTPTestSupport", "ConnectionFuzzHarness",
                "OTPServer", "OTPClient", "OTPProtocol",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings),
        .testTarget(
            name: "TwoFactorServiceTests", dependencies: ["OTPCore", "OTPStore", "OTPPostgres", "OTPTestSupport"],
            swiftSettings: strictSettings),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "OTPClient", "OTPProtocol", "OTPCore", "OTPStore", "OTPMetrics", "TwilioStandIn", "OTPTestSupport",
            ],
            swiftSettings: strictSettings),
    ],
    swiftLanguageModes: [.v6]
)
