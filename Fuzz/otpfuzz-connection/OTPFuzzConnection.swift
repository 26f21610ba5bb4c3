// The connection fuzz target (Fuzz/ConnectionHarness/ConnectionHarness.swift says what an input
// is and what is checked). Built two ways, as `otpfuzz`:
//
// - `scripts/fuzz.sh` builds it with `-sanitize=fuzzer,address -DFUZZING`: `main` hands over
//   to libFuzzer (`LLVMFuzzerRunDriver`), which calls the harness with each input it makes up.
// - A normal build (`swift build --product otpfuzz-connection`) gives a replay tool:
//   `otpfuzz-connection FILE|DIR...` runs saved inputs through the same checks and exits 1 on
//   the first violation.
//
// Either build writes the seeds with `otpfuzz-connection --write-seeds DIR`.

import ConnectionFuzzHarness
import Foundation

#if FUZZING
    /// libFuzzer's entry point for programs that keep their own `main`.
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @main
    struct OTPFuzzConnection {
        static func main() throws {
            let arguments = CommandLine.arguments
            if arguments.count == 3, arguments[1] == "--write-seeds" {
                try writeSeeds(to: arguments[2])
                return
            }
            var argc = CommandLine.argc
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
            exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
        }
    }

    /// The callback libFuzzer calls with each input; exported under its usual name too, since
    /// the fuzzer runtime's own `main` (linked in alongside ours) refers to it.
    @_cdecl("LLVMFuzzerTestOneInput")
    func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
        let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
        do {
            try ConnectionHarness.check(bytes)
        } catch {
            fatalError("connection invariant broken: \(error)")
        }
        return 0
    }
#else
    @main
    struct OTPFuzzConnection {
        static func main() throws {
            var arguments = Array(CommandLine.arguments.dropFirst())
            if arguments.first == "--write-seeds", arguments.count == 2 {
                try writeSeeds(to: arguments[1])
                return
            }
            if arguments.isEmpty || arguments.first?.hasPrefix("-") == true {
                FileHandle.standardError.write(
                    Data("usage: otpfuzz-connection FILE|DIR... | otpfuzz-connection --write-seeds DIR\n".utf8))
                exit(2)
            }
            var count = 0
            while let path = arguments.popLast() {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    FileHandle.standardError.write(Data("otpfuzz-connection: no such file: \(path)\n".utf8))
                    exit(2)
                }
                if isDirectory.boolValue {
                    let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
                    arguments.append(contentsOf: names.map { path + "/" + $0 })
                    continue
                }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                do {
                    try ConnectionHarness.check(bytes)
                } catch {
                    print("\(path): \(error)")
                    exit(1)
                }
                count += 1
            }
            print("\(count) inputs replayed, every connection invariant held")
        }
    }
#endif

/// Writes the harness's seeds, one file each, into `path`.
func writeSeeds(to path: String) throws {
    let directory = URL(fileURLWithPath: path)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    for seed in ConnectionHarness.seeds() {
        try Data(seed.bytes).write(to: directory.appendingPathComponent(seed.name))
    }
    print("wrote \(ConnectionHarness.seeds().count) seeds to \(directory.path)")
}
