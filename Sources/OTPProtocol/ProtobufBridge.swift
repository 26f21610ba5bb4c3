internal import COTPProto
internal import CProtobufC

#if canImport(Glibc)
    internal import Glibc
#endif

/// The protobuf-c descriptor of one message type. Obtained from the generated accessor
/// functions in COTPProto, never by taking the address of an imported C constant.
public struct MessageSchema: @unchecked Sendable {
    // @unchecked Sendable: the pointer refers to a descriptor that protoc-c emitted as static
    // `const` data; it is never written and lives for the whole process.
    let descriptor: UnsafePointer<ProtobufCMessageDescriptor>

    init(_ descriptor: UnsafePointer<ProtobufCMessageDescriptor>) {
        self.descriptor = descriptor
    }

    /// The message's full protobuf name, e.g. `otp.v1.Request`.
    public var name: String { String(cString: descriptor.pointee.name) }
}

/// A Swift value type for one protobuf message of the contract in `proto/otp/v1/`.
///
/// Every type converts to and from the wire through `ProtobufBridge`, the one place that talks
/// to protobuf-c.
public protocol WireMessage: Sendable, Equatable {
    /// The protobuf-c descriptor of this message.
    static var schema: MessageSchema { get }
    /// Builds the value from decoded fields; throws `invalidArgument` for values the contract
    /// does not allow (for example an unknown enum number).
    init(fields: FieldReader) throws(RPCError)
    /// Writes the fields that differ from their defaults.
    func encode(to fields: inout FieldWriter)
}

extension WireMessage {
    /// Decodes a message from protobuf bytes. Strings must be valid UTF-8 without NUL.
    public init(serialized bytes: [UInt8]) throws(RPCError) {
        let reader = try ProtobufBridge.decode(Self.schema, from: bytes)
        try self.init(fields: reader)
    }

    /// The protobuf encoding of this message.
    public func serialized() -> [UInt8] {
        var writer = FieldWriter()
        encode(to: &writer)
        return ProtobufBridge.encode(Self.schema, writer)
    }
}

/// One decoded field value.
enum FieldValue: Sendable, Equatable {
    case int(Int64)
    case uint(UInt64)
    case bool(Bool)
    case string(String)
    case bytes([UInt8])
    case message(FieldReader)
    case repeated([FieldValue])
}

/// The decoded fields of one message, by field number. Absent fields read as their defaults.
public struct FieldReader: Sendable, Equatable {
    var values: [UInt32: FieldValue] = [:]

    /// Whether field `number` of a `oneof` is the one set (it may hold its default value).
    /// Only the field a oneof's case names is read, so at most one of its fields is present.
    public func has(_ number: UInt32) -> Bool { values[number] != nil }

    /// A string field ("" when absent).
    public func string(_ number: UInt32) -> String {
        if case .string(let value) = values[number] { return value }
        return ""
    }

    /// A bytes field (empty when absent).
    public func bytes(_ number: UInt32) -> [UInt8] {
        if case .bytes(let value) = values[number] { return value }
        return []
    }

    /// A uint32/uint64 field (0 when absent).
    public func uint64(_ number: UInt32) -> UInt64 {
        if case .uint(let value) = values[number] { return value }
        return 0
    }

    /// A uint32 field (0 when absent).
    public func uint32(_ number: UInt32) -> UInt32 { UInt32(truncatingIfNeeded: uint64(number)) }

    /// An int32/int64/enum field (0 when absent).
    public func int64(_ number: UInt32) -> Int64 {
        if case .int(let value) = values[number] { return value }
        return 0
    }

    /// An int32 or enum field (0 when absent).
    public func int32(_ number: UInt32) -> Int32 { Int32(truncatingIfNeeded: int64(number)) }

    /// A bool field (false when absent).
    public func bool(_ number: UInt32) -> Bool {
        if case .bool(let value) = values[number] { return value }
        return false
    }

    /// A nested message field (`nil` when absent).
    public func message<M: WireMessage>(_ number: UInt32, as type: M.Type = M.self) throws(RPCError) -> M? {
        guard case .message(let reader) = values[number] else { return nil }
        return try M(fields: reader)
    }

    /// A repeated string field.
    public func strings(_ number: UInt32) -> [String] {
        guard case .repeated(let items) = values[number] else { return [] }
        return items.compactMap { if case .string(let value) = $0 { value } else { nil } }
    }

    /// A repeated message field.
    public func messages<M: WireMessage>(_ number: UInt32, as type: M.Type = M.self) throws(RPCError) -> [M] {
        guard case .repeated(let items) = values[number] else { return [] }
        var result: [M] = []
        for item in items {
            if case .message(let reader) = item { result.append(try M(fields: reader)) }
        }
        return result
    }

    /// An enum field mapped to a Swift enum; an unknown number is `invalidArgument`.
    public func enumeration<E: RawRepresentable>(_ number: UInt32, as type: E.Type = E.self, field: String)
        throws(RPCError) -> E where E.RawValue == Int32
    {
        let raw = int32(number)
        guard let value = E(rawValue: raw) else {
            throw RPCError(code: .invalidArgument, message: "\(field): unknown value \(raw)")
        }
        return value
    }
}

/// Collects the fields of a message to encode.
public struct FieldWriter: Sendable {
    var values: [UInt32: FieldValue] = [:]

    public init() {}

    public mutating func set(_ number: UInt32, _ value: String) {
        if !value.isEmpty { values[number] = .string(value) }
    }
    public mutating func set(_ number: UInt32, _ value: [UInt8]) {
        if !value.isEmpty { values[number] = .bytes(value) }
    }
    public mutating func set(_ number: UInt32, _ value: UInt64) { if value != 0 { values[number] = .uint(value) } }
    public mutating func set(_ number: UInt32, _ value: UInt32) {
        if value != 0 { values[number] = .uint(UInt64(value)) }
    }
    public mutating func set(_ number: UInt32, _ value: Int64) { if value != 0 { values[number] = .int(value) } }
    public mutating func set(_ number: UInt32, _ value: Int32) { if value != 0 { values[number] = .int(Int64(value)) } }
    public mutating func set(_ number: UInt32, _ value: Bool) { if value { values[number] = .bool(true) } }
    public mutating func set<E: RawRepresentable>(_ number: UInt32, _ value: E) where E.RawValue == Int32 {
        set(number, value.rawValue)
    }
    public mutating func set<M: WireMessage>(_ number: UInt32, _ value: M?) {
        guard let value else { return }
        var nested = FieldWriter()
        value.encode(to: &nested)
        values[number] = .message(FieldReader(values: nested.values))
    }
    public mutating func set(_ number: UInt32, _ value: [String]) {
        if !value.isEmpty { values[number] = .repeated(value.map { .string($0) }) }
    }
    /// Writes field `number` of a `oneof`. Unlike a plain proto3 field it is sent even when it
    /// holds its default value (`""`, `0`): that this field is the one set is itself the value.
    public mutating func setOneof(_ number: UInt32, _ value: String) { values[number] = .string(value) }
    public mutating func setOneof(_ number: UInt32, _ value: [UInt8]) { values[number] = .bytes(value) }
    public mutating func setOneof(_ number: UInt32, _ value: UInt64) { values[number] = .uint(value) }
    public mutating func setOneof(_ number: UInt32, _ value: UInt32) { values[number] = .uint(UInt64(value)) }
    public mutating func setOneof(_ number: UInt32, _ value: Int64) { values[number] = .int(value) }
    public mutating func setOneof(_ number: UInt32, _ value: Int32) { values[number] = .int(Int64(value)) }
    public mutating func setOneof(_ number: UInt32, _ value: Bool) { values[number] = .bool(value) }
    public mutating func setOneof<E: RawRepresentable>(_ number: UInt32, _ value: E) where E.RawValue == Int32 {
        setOneof(number, value.rawValue)
    }
    public mutating func setOneof<M: WireMessage>(_ number: UInt32, _ value: M) { set(number, value) }
    public mutating func set<M: WireMessage>(_ number: UInt32, _ value: [M]) {
        guard !value.isEmpty else { return }
        values[number] = .repeated(
            value.map { item in
                var nested = FieldWriter()
                item.encode(to: &nested)
                return .message(FieldReader(values: nested.values))
            })
    }
}

/// The single bridge between Swift values and protobuf-c. Decoding checks every string for
/// valid UTF-8 and interior NUL on the wire bytes first (protobuf-c checks neither and would
/// silently cut a string at a NUL), then lets protobuf-c unpack and reads the C struct through
/// the descriptor's field table. Encoding fills a C struct the same way and lets protobuf-c pack.
enum ProtobufBridge {
    /// Nesting deeper than this is refused (the contract nests at most 3 levels).
    static let maximumDepth = 8

    static func decode(_ schema: MessageSchema, from bytes: [UInt8]) throws(RPCError) -> FieldReader {
        let name = schema.name
        let result: Result<FieldReader, RPCError> = bytes.withUnsafeBufferPointer { buffer in
            do throws(RPCError) {
                try checkStrings(UnsafeRawBufferPointer(buffer), schema.descriptor, name: name)
            } catch {
                return .failure(error)
            }
            // protobuf-c needs a non-null pointer even for an empty message.
            var empty: UInt8 = 0
            let base = buffer.baseAddress ?? withUnsafeMutablePointer(to: &empty) { UnsafePointer($0) }
            guard let message = protobuf_c_message_unpack(schema.descriptor, nil, buffer.count, base) else {
                return .failure(RPCError(code: .invalidArgument, message: "undecodable \(name)"))
            }
            defer { protobuf_c_message_free_unpacked(message, nil) }
            return .success(read(UnsafeRawPointer(message), schema.descriptor))
        }
        return try result.get()
    }

    static func encode(_ schema: MessageSchema, _ writer: FieldWriter) -> [UInt8] {
        var arena = Arena()
        defer { arena.freeAll() }
        let message = build(schema.descriptor, writer.values, &arena)
        let cMessage = message.assumingMemoryBound(to: ProtobufCMessage.self)
        let size = protobuf_c_message_get_packed_size(cMessage)
        var out = [UInt8](repeating: 0, count: size)
        let written = out.withUnsafeMutableBufferPointer { buffer in
            protobuf_c_message_pack(cMessage, buffer.baseAddress!)
        }
        precondition(written == size, "protobuf-c packed \(written) of \(size) bytes")
        return out
    }

    // MARK: Wire-level string check

    /// Walks the wire bytes and refuses any string field (at any depth) that is not valid
    /// UTF-8 or holds a NUL; also refuses malformed wire structure and groups.
    ///
    /// Every request envelope passes through here, so the walk allocates nothing: the error
    /// and its message are built only when the bytes are refused.
    static func checkStrings(
        _ bytes: UnsafeRawBufferPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>,
        depth: Int = 0, name: @autoclosure () -> String
    ) throws(RPCError) {
        func bad() -> RPCError { RPCError(code: .invalidArgument, message: "undecodable \(name())") }
        guard depth < maximumDepth else { throw bad() }
        var index = 0
        func varint() throws(RPCError) -> UInt64 {
            var value: UInt64 = 0
            var shift: UInt64 = 0
            while true {
                guard index < bytes.count, shift < 64 else { throw bad() }
                let byte = bytes[index]
                index += 1
                value |= UInt64(byte & 0x7F) << shift
                if byte & 0x80 == 0 { return value }
                shift += 7
            }
        }
        while index < bytes.count {
            let key = try varint()
            let number = key >> 3
            guard number > 0, number <= UInt64(UInt32.max >> 3) else { throw bad() }
            switch key & 7 {
            case 0: _ = try varint()
            case 1: index += 8
            case 5: index += 4
            case 2:
                let length = try varint()
                guard length <= UInt64(bytes.count - index) else { throw bad() }
                let slice = UnsafeRawBufferPointer(rebasing: bytes[index..<index + Int(length)])
                index += Int(length)
                guard let field = protobuf_c_message_descriptor_get_field(descriptor, UInt32(number)) else {
                    continue
                }
                if field.pointee.type == PROTOBUF_C_TYPE_STRING {
                    guard isUTF8TextWithoutNUL(slice) else {
                        let fieldName = String(cString: field.pointee.name)
                        throw RPCError(
                            code: .invalidArgument,
                            message: "\(name()).\(fieldName) is not valid UTF-8 text without NUL")
                    }
                } else if field.pointee.type == PROTOBUF_C_TYPE_MESSAGE {
                    let nested = field.pointee.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
                    try checkStrings(slice, nested, depth: depth + 1, name: name())
                }
            default:
                throw bad()
            }
            guard index <= bytes.count else { throw bad() }
        }
    }

    /// Whether `bytes` is well-formed UTF-8 (no overlong forms, surrogates or scalars past
    /// U+10FFFF: the standard library's own parser decides) with no NUL. Allocates nothing;
    /// all-ASCII text, the common case, is decided in one pass.
    static func isUTF8TextWithoutNUL(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var ascii = true
        for byte in bytes {
            if byte == 0 { return false }
            if byte >= 0x80 { ascii = false }
        }
        if ascii { return true }
        var parser = Unicode.UTF8.ForwardParser()
        var input = bytes.makeIterator()
        while true {
            switch parser.parseScalar(from: &input) {
            case .valid: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    // MARK: C struct → Swift

    private static func read(
        _ message: UnsafeRawPointer, _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>
    ) -> FieldReader {
        var reader = FieldReader()
        guard let fields = descriptor.pointee.fields else { return reader }
        for i in 0..<Int(descriptor.pointee.n_fields) {
            let field = fields + i
            let number = field.pointee.id
            let slot = message + Int(field.pointee.offset)
            if field.pointee.flags & PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue != 0 {
                // The fields of a oneof share one union; only the one its case names is valid.
                let selected = (message + Int(field.pointee.quantifier_offset)).load(as: UInt32.self)
                guard selected == number, let value = readScalar(slot, field) else { continue }
                reader.values[number] = value
            } else if field.pointee.label == PROTOBUF_C_LABEL_REPEATED {
                let count = (message + Int(field.pointee.quantifier_offset)).load(as: Int.self)
                guard count > 0, let array = slot.load(as: UnsafeRawPointer?.self) else { continue }
                let stride = elementSize(field.pointee.type)
                reader.values[number] = .repeated(
                    (0..<count).compactMap { readScalar(array + $0 * stride, field) })
            } else if let value = readScalar(slot, field) {
                reader.values[number] = value
            }
        }
        return reader
    }

    private static func readScalar(
        _ slot: UnsafeRawPointer, _ field: UnsafePointer<ProtobufCFieldDescriptor>
    ) -> FieldValue? {
        let type = field.pointee.type
        switch type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_ENUM:
            return .int(Int64(slot.loadUnaligned(as: Int32.self)))
        case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
            return .int(slot.loadUnaligned(as: Int64.self))
        case PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32:
            return .uint(UInt64(slot.loadUnaligned(as: UInt32.self)))
        case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
            return .uint(slot.loadUnaligned(as: UInt64.self))
        case PROTOBUF_C_TYPE_BOOL:
            return .bool(slot.loadUnaligned(as: protobuf_c_boolean.self) != 0)
        case PROTOBUF_C_TYPE_STRING:
            guard let cString = slot.load(as: UnsafePointer<CChar>?.self) else { return nil }
            return .string(String(cString: cString))
        case PROTOBUF_C_TYPE_BYTES:
            let data = slot.load(as: ProtobufCBinaryData.self)
            guard data.len > 0, let pointer = data.data else { return .bytes([]) }
            return .bytes(Array(UnsafeBufferPointer(start: pointer, count: data.len)))
        case PROTOBUF_C_TYPE_MESSAGE:
            guard let nested = slot.load(as: UnsafeRawPointer?.self) else { return nil }
            let descriptor = field.pointee.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            return .message(read(nested, descriptor))
        default:
            // float/double are not used by the contract.
            return nil
        }
    }

    private static func elementSize(_ type: ProtobufCType) -> Int {
        switch type {
        case PROTOBUF_C_TYPE_INT32, PROTOBUF_C_TYPE_SINT32, PROTOBUF_C_TYPE_SFIXED32, PROTOBUF_C_TYPE_ENUM,
            PROTOBUF_C_TYPE_UINT32, PROTOBUF_C_TYPE_FIXED32, PROTOBUF_C_TYPE_BOOL, PROTOBUF_C_TYPE_FLOAT:
            return 4
        case PROTOBUF_C_TYPE_BYTES:
            return MemoryLayout<ProtobufCBinaryData>.stride
        case PROTOBUF_C_TYPE_STRING, PROTOBUF_C_TYPE_MESSAGE:
            return MemoryLayout<UnsafeRawPointer>.stride
        default:
            return 8
        }
    }

    // MARK: Swift → C struct

    /// Every allocation made while building one C message, freed together after packing.
    private struct Arena {
        var pointers: [UnsafeMutableRawPointer] = []

        mutating func allocate(_ size: Int) -> UnsafeMutableRawPointer {
            let pointer = calloc(1, max(size, 1))!
            pointers.append(pointer)
            return pointer
        }

        mutating func string(_ value: String) -> UnsafeMutablePointer<CChar> {
            let utf8 = Array(value.utf8)
            let pointer = allocate(utf8.count + 1)
            utf8.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: utf8.count) }
            return pointer.assumingMemoryBound(to: CChar.self)
        }

        func freeAll() { for pointer in pointers { free(pointer) } }
    }

    private static func build(
        _ descriptor: UnsafePointer<ProtobufCMessageDescriptor>, _ values: [UInt32: FieldValue],
        _ arena: inout Arena
    ) -> UnsafeMutableRawPointer {
        let message = arena.allocate(descriptor.pointee.sizeof_message)
        protobuf_c_message_init(descriptor, message)
        for (number, value) in values {
            guard let field = protobuf_c_message_descriptor_get_field(descriptor, number) else {
                preconditionFailure("field \(number) is not in \(String(cString: descriptor.pointee.name))")
            }
            let slot = message + Int(field.pointee.offset)
            if case .repeated(let items) = value {
                precondition(field.pointee.label == PROTOBUF_C_LABEL_REPEATED)
                let stride = elementSize(field.pointee.type)
                let array = arena.allocate(stride * items.count)
                for (i, item) in items.enumerated() {
                    writeScalar(item, array + i * stride, field, &arena)
                }
                (message + Int(field.pointee.quantifier_offset)).storeBytes(of: items.count, as: Int.self)
                slot.storeBytes(of: UnsafeRawPointer(array), as: UnsafeRawPointer.self)
            } else {
                writeScalar(value, slot, field, &arena)
                if field.pointee.flags & PROTOBUF_C_FIELD_FLAG_ONEOF.rawValue != 0 {
                    // protobuf-c packs a oneof's field only when the case names it.
                    (message + Int(field.pointee.quantifier_offset)).storeBytes(of: number, as: UInt32.self)
                }
            }
        }
        return message
    }

    private static func writeScalar(
        _ value: FieldValue, _ slot: UnsafeMutableRawPointer, _ field: UnsafePointer<ProtobufCFieldDescriptor>,
        _ arena: inout Arena
    ) {
        let type = field.pointee.type
        switch value {
        case .int(let v):
            switch type {
            case PROTOBUF_C_TYPE_INT64, PROTOBUF_C_TYPE_SINT64, PROTOBUF_C_TYPE_SFIXED64:
                slot.storeBytes(of: v, as: Int64.self)
            default:
                slot.storeBytes(of: Int32(truncatingIfNeeded: v), as: Int32.self)
            }
        case .uint(let v):
            switch type {
            case PROTOBUF_C_TYPE_UINT64, PROTOBUF_C_TYPE_FIXED64:
                slot.storeBytes(of: v, as: UInt64.self)
            default:
                slot.storeBytes(of: UInt32(truncatingIfNeeded: v), as: UInt32.self)
            }
        case .bool(let v):
            slot.storeBytes(of: v ? 1 : 0, as: protobuf_c_boolean.self)
        case .string(let v):
            slot.storeBytes(of: UnsafePointer(arena.string(v)), as: UnsafePointer<CChar>.self)
        case .bytes(let v):
            let data = arena.allocate(v.count)
            v.withUnsafeBytes { if v.count > 0 { data.copyMemory(from: $0.baseAddress!, byteCount: v.count) } }
            slot.storeBytes(
                of: ProtobufCBinaryData(len: v.count, data: data.assumingMemoryBound(to: UInt8.self)),
                as: ProtobufCBinaryData.self)
        case .message(let reader):
            let descriptor = field.pointee.descriptor.assumingMemoryBound(to: ProtobufCMessageDescriptor.self)
            let nested = build(descriptor, reader.values, &arena)
            slot.storeBytes(of: UnsafeRawPointer(nested), as: UnsafeRawPointer.self)
        case .repeated:
            preconditionFailure("nested repeated values do not exist in protobuf")
        }
    }
}
