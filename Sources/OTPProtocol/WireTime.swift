/// Times on the wire (Unix seconds, `int64`) that mean something other than a moment.
public enum WireTime {
    /// What every `locked_until` field (`AccountStatus`, `VerifyResponse`,
    /// `RedeemBackupCodeResponse`, `ErrorDetail`) holds for a lock that only an administrator
    /// can end (`UnlockAccount`): 2147483647 (2^31 - 1, the largest 32-bit Unix time), never a
    /// real end time. Clients show it as "until an administrator unlocks it".
    public static let lockedUntilAdministratorUnlocks = Int64(Int32.max)
}
