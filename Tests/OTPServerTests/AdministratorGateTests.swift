import Foundation
import Logging
import OTPClient
import OTPProtocol
import OTPServer
import OTPTestSupport
import ServiceLifecycle
import Synchronization
import Testing

/// A router that answers every call with an empty message and remembers which methods reached it.
final class RecordingRouter: CallRouter {
    private let reached = Mutex<[TwoFactorMethod]>([])

    var methods: [TwoFactorMethod] { reached.withLock { $0 } }

    func handleInline(payload: [UInt8], context: CallContext) -> Result<[UInt8], RPCError>? {
        context.method == .health ? .success(HealthResponse(status: "SERVING").serialized()) : nil
    }

    func handle(payload: [UInt8], context: CallContext) async -> Result<[UInt8], RPCError> {
        reached.withLock { $0.append(context.method) }
        return .success([])
    }
}

/// The administrator check in front of the router, through the socket server.
@Suite("administrator calls", .serialized)
struct AdministratorGateTests {
    private func withServer(
        admins: Set<UInt32>, _ body: (OTPClient, RecordingRouter) async throws -> Void
    ) async throws {
        let router = RecordingRouter()
        try await withRunningServer(router: router, configure: { $0.adminUIDs = admins }) { path, _ in
            let client = OTPClient(socketPath: path, defaultDeadline: .seconds(10))
            do {
                try await body(client, router)
            } catch {
                await client.close()
                throw error
            }
            await client.close()
        }
    }

    @Test func administratorCallsOfAClientNeverReachTheRouter() async throws {
        // The test's uid may connect (the daemon's own uid) but is not 4242.
        try await withServer(admins: [4242]) { client, router in
            let refused: [(String, () async throws(RPCError) -> Void)] = [
                (
                    "UnlockAccount",
                    { () async throws(RPCError) in _ = try await client.unlockAccount(.init(accountId: "a")) }
                ),
                (
                    "ResetAccount",
                    { () async throws(RPCError) in _ = try await client.resetAccount(.init(accountId: "a")) }
                ),
                (
                    "SendTestSms",
                    { () async throws(RPCError) in _ = try await client.sendTestSms(.init(phoneNumber: "+15551234567"))
                    }
                ),
                ("ListEvents", { () async throws(RPCError) in _ = try await client.listEvents(.init(accountId: "")) }),
                (
                    "ListDeliveries",
                    { () async throws(RPCError) in _ = try await client.listDeliveries(.init(accountId: "")) }
                ),
            ]
            for (name, call) in refused {
                do throws(RPCError) {
                    try await call()
                    Issue.record("\(name) was not refused")
                } catch {
                    #expect(error.code == .permissionDenied)
                    #expect(error.message == "\(name) needs an administrator peer")
                }
            }
            #expect(router.methods.isEmpty, "\(router.methods)")

            _ = try await client.listEvents(.init(accountId: "a"))
            _ = try await client.listDeliveries(.init(accountId: "a"))
            _ = try await client.getStatus(.init(accountId: "a"))
            #expect(router.methods == [.listEvents, .listDeliveries, .getStatus])
        }
    }

    @Test func byDefaultTheServersOwnUidIsAnAdministrator() async throws {
        try await withServer(admins: []) { client, router in
            _ = try await client.unlockAccount(.init(accountId: "a"))
            _ = try await client.listEvents(.init(accountId: ""))
            _ = try await client.sendTestSms(.init(phoneNumber: "+15551234567"))
            #expect(router.methods == [.unlockAccount, .listEvents, .sendTestSms])
        }
    }

    @Test func theAdministratorCallsAreExactlyThese() {
        let always: Set<TwoFactorMethod> = [
            .unlockAccount, .resetAccount, .sendTestSms, .listSmsBreakers, .updateSmsBreaker,
        ]
        for method in TwoFactorMethod.allCases where method != .listEvents && method != .listDeliveries {
            #expect(method.requiresAdministrator(payload: []) == always.contains(method), "\(method)")
        }
        #expect(TwoFactorMethod.listEvents.requiresAdministrator(payload: ListEventsRequest().serialized()))
        #expect(
            !TwoFactorMethod.listEvents.requiresAdministrator(payload: ListEventsRequest(accountId: "a").serialized()))
        #expect(
            TwoFactorMethod.listDeliveries.requiresAdministrator(
                payload: ListDeliveriesRequest(pageSize: 5).serialized()))
        #expect(
            !TwoFactorMethod.listDeliveries.requiresAdministrator(
                payload: ListDeliveriesRequest(accountId: "a").serialized()))
        #expect(TwoFactorMethod.listEvents.requiresAdministrator(payload: [0x0A, 0x05, 0x61]), "undecodable: refused")
    }
}
