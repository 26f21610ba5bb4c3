// The decoder fuzz target. Built two ways:
//
// - `scripts/fuzz.sh` builds it with `-sanitize=fuzzer,address -DFUZZING`: `main` hands over
//   to libFuzzer (`LLVMFuzzerRunDriver`), which calls the harness with each input it makes up.
// - A normal build (`swift build --product otpfuzz`) gives a replay tool:
//   `otpfuzz FILE|DIR...` runs saved inputs (a crash libFuzzer found, a corpus) through the
//   same checks and exits 1 on the first violation; `otpfuzz --write-seeds DIR` writes the seeds.

import DecoderFuzzHarness
import Foundation

#if FUZZING
    /// libFuzzer's entry point for programs that keep their own `main` (SwiftPM names the
    /// executable's entry point itself, so libFuzzer's `main` cannot be used).
    @_silgen_name("LLVMFuzzerRunDriver")
    func LLVMFuzzerRunDriver(
        _ argc: UnsafeMutablePointer<CInt>,
        _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
        _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
    ) -> CInt

    @main
    struct OTPFuzz {
        static func main() {
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
            try DecoderHarness.check(bytes)
        } catch {
            fatalError("decoder invariant broken: \(error)")
        }
        return 0
    }
#else
    @main
    struct OTPFuzz {
        static func main() throws {
            var arguments = Array(CommandLine.arguments.dropFirst())
            if arguments.first == "--write-seeds", arguments.count == 2 {
                let directory = URL(fileURLWithPath: arguments[1])
                try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
                for seed in DecoderHarness.seeds() {
                    try Data(seed.bytes).write(to: directory.appendingPathComponent(seed.name))
                }
                print("wrote \(DecoderHarness.seeds().count) seeds to \(directory.path)")
                return
            }
            if arguments.isEmpty || arguments.first?.hasPrefix("-") == true {
                FileHandle.standardError.write(Data("usage: otpfuzz FILE|DIR... | otpfuzz --write-seeds DIR\n".utf8))
                exit(2)
            }
            var count = 0
            while let path = arguments.popLast() {
                var isDirectory: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                    FileHandle.standardError.write(Data("otpfuzz: no such file: \(path)\n".utf8))
                    exit(2)
                }
                if isDirectory.boolValue {
                    let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
                    arguments.append(contentsOf: names.map { path + "/" + $0 })
                    continue
                }
                let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
                do {
                    try DecoderHarness.check(bytes)
                } catch {
                    print("\(path): \(error)")
                    exit(1)
                }
                count += 1
            }
            print("\(count) inputs replayed, every decoder invariant held")
        }
    }
#endif
