/// The one error type of the otpd protocol: a gRPC canonical status code, a message that may be
/// shown to the caller, and an optional `ErrorDetail` (the wait before a retry, the end of a
/// lock) that travels with it on the wire.
///
/// Modelled on grpc-swift-2's `RPCError`: `Code` is a struct over a private enum, so new codes
/// can be added without breaking exhaustive switches in callers.
public struct RPCError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A gRPC canonical status code.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Wrapped: Int32, Sendable {
            case ok = 0
            case cancelled = 1
            case unknown = 2
            case invalidArgument = 3
            case deadlineExceeded = 4
            case notFound = 5
            case alreadyExists = 6
            case permissionDenied = 7
            case resourceExhausted = 8
            case failedPrecondition = 9
            case aborted = 10
            case outOfRange = 11
            case unimplemented = 12
            case `internal` = 13
            case unavailable = 14
            case dataLoss = 15
            case unauthenticated = 16
        }

        private let wrapped: Wrapped

        private init(_ wrapped: Wrapped) { self.wrapped = wrapped }

        /// The code for a wire number; `nil` for numbers gRPC does not define.
        public init?(rawValue: Int32) {
            guard let wrapped = Wrapped(rawValue: rawValue) else { return nil }
            self.wrapped = wrapped
        }

        /// The wire number.
        public var rawValue: Int32 { wrapped.rawValue }

        public static let ok = Code(.ok)
        public static let cancelled = Code(.cancelled)
        public static let unknown = Code(.unknown)
        public static let invalidArgument = Code(.invalidArgument)
        public static let deadlineExceeded = Code(.deadlineExceeded)
        public static let notFound = Code(.notFound)
        public static let alreadyExists = Code(.alreadyExists)
        public static let permissionDenied = Code(.permissionDenied)
        public static let resourceExhausted = Code(.resourceExhausted)
        public static let failedPrecondition = Code(.failedPrecondition)
        public static let aborted = Code(.aborted)
        public static let outOfRange = Code(.outOfRange)
        public static let unimplemented = Code(.unimplemented)
        public static let `internal` = Code(.internal)
        public static let unavailable = Code(.unavailable)
        public static let dataLoss = Code(.dataLoss)
        public static let unauthenticated = Code(.unauthenticated)

        /// The canonical upper-case name, e.g. `INVALID_ARGUMENT`.
        public var description: String {
            switch wrapped {
            case .ok: "OK"
            case .cancelled: "CANCELLED"
            case .unknown: "UNKNOWN"
            case .invalidArgument: "INVALID_ARGUMENT"
            case .deadlineExceeded: "DEADLINE_EXCEEDED"
            case .notFound: "NOT_FOUND"
            case .alreadyExists: "ALREADY_EXISTS"
            case .permissionDenied: "PERMISSION_DENIED"
            case .resourceExhausted: "RESOURCE_EXHAUSTED"
            case .failedPrecondition: "FAILED_PRECONDITION"
            case .aborted: "ABORTED"
            case .outOfRange: "OUT_OF_RANGE"
            case .unimplemented: "UNIMPLEMENTED"
            case .internal: "INTERNAL"
            case .unavailable: "UNAVAILABLE"
            case .dataLoss: "DATA_LOSS"
            case .unauthenticated: "UNAUTHENTICATED"
            }
        }
    }

    /// The status code.
    public var code: Code
    /// A message for the caller. It never contains a code, a secret or a full phone number.
    public var message: String
    /// Extra facts for the caller (wait time, lock end), sent in the response payload.
    public var detail: ErrorDetail?

    /// Creates an error. `code` must not be `.ok`.
    public init(code: Code, message: String, detail: ErrorDetail? = nil) {
        self.code = code
        self.message = message
        self.detail = detail
    }

    public var description: String { "\(code): \(message)" }
}
