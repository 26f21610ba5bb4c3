import OTPProtocol
import Testing

@Suite("frame codec")
struct FramingTests {
    @Test func headerEncodesBigEndianLength() {
        #expect(Frame.header(length: 0) == [0, 0, 0, 0, 0])
        #expect(Frame.header(length: 0x0102_0304) == [0, 1, 2, 3, 4])
        #expect(Frame.encode([7, 8]) == [0, 0, 0, 0, 2, 7, 8])
    }

    @Test func lengthZeroIsAValidEmptyFrame() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 0, 0])
        #expect(try decoder.next() == [])
        #expect(try decoder.next() == nil)
        try decoder.finish()
    }

    @Test func maximumIsAcceptedAndMaximumPlusOneRefused() throws {
        let maximum = 1024
        var decoder = FrameDecoder(maximumPayload: maximum)
        decoder.append(Frame.encode([UInt8](repeating: 1, count: maximum)))
        #expect(try decoder.next()?.count == maximum)

        var over = FrameDecoder(maximumPayload: maximum)
        over.append(Frame.header(length: maximum + 1))  // refused from the header alone
        #expect(throws: FrameError.tooLarge(length: UInt64(maximum + 1), maximum: maximum)) { try over.next() }
        #expect(FrameError.tooLarge(length: 1, maximum: 0).rpcError.code == .resourceExhausted)
    }

    @Test func lengthTwoToTheThirtyTwoMinusOneIsRefusedWithoutAllocating() {
        var decoder = FrameDecoder()
        decoder.append([0, 0xFF, 0xFF, 0xFF, 0xFF])
        #expect(throws: FrameError.tooLarge(length: 4_294_967_295, maximum: Frame.defaultMaximumPayload)) {
            try decoder.next()
        }
    }

    @Test func badFlagByteIsRefused() {
        for flag: UInt8 in [1, 0x80, 0xFF] {
            var decoder = FrameDecoder()
            decoder.append([flag, 0, 0, 0, 1, 9])
            #expect(throws: FrameError.badFlag(flag)) { try decoder.next() }
        }
        #expect(FrameError.badFlag(1).rpcError.code == .invalidArgument)
    }

    @Test func truncatedPrefixWaitsThenFailsAtEOF() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0])
        #expect(try decoder.next() == nil)
        #expect(throws: FrameError.truncated(received: 3, expected: 5)) { try decoder.finish() }
    }

    @Test func eofMidFrame() throws {
        var decoder = FrameDecoder()
        decoder.append([0, 0, 0, 0, 10, 1, 2, 3])
        #expect(try decoder.next() == nil)
        #expect(throws: FrameError.truncated(received: 8, expected: 15)) { try decoder.finish() }
    }

    @Test func byteAtATimeAndManyFramesInOneRead() throws {
        let frames = (0..<300).map { i in [UInt8](repeating: UInt8(i % 256), count: i) }
        let stream = frames.flatMap { Frame.encode($0) }
        var decoder = FrameDecoder()
        var out: [[UInt8]] = []
        for byte in stream {
            decoder.append([byte])
            while let frame = try decoder.next() { out.append(frame) }
        }
        #expect(out == frames)
        var bulk = FrameDecoder()
        bulk.append(stream)
        var bulkOut: [[UInt8]] = []
        while let frame = try bulk.next() { bulkOut.append(frame) }
        #expect(bulkOut == frames)
        try bulk.finish()
    }
}
