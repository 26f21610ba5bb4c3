internal import OTPProtocol

extension MethodDescriptor {
    /// Decodes `payload` as this method's request, lets `body` answer it and encodes the answer:
    /// the generated `TwoFactorHandler.dispatch(_:_:)` serves every method this way.
    func serve(
        _ payload: [UInt8], _ context: CallContext, _ body: (Input, CallContext) async throws(RPCError) -> Output
    ) async throws(RPCError) -> [UInt8] {
        try await body(Input(serialized: payload), context).serialized()
    }

    /// The same for a call answered on the event loop (`CallRouter.handleInline`): never suspends.
    func serveInline(_ payload: [UInt8], _ body: (Input) throws(RPCError) -> Output) -> Result<[UInt8], RPCError> {
        do throws(RPCError) {
            return .success(try body(Input(serialized: payload)).serialized())
        } catch {
            return .failure(error)
        }
    }
}
