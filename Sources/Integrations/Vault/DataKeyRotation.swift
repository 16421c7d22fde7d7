package import Foundation
package import PortalCore

/// When the vault stops sealing under a data key and makes a new one: once the key is `maxAge` old or has
/// sealed `maxSeals` values. Old keys are kept for reading; values move to the newest key when next written.
///
/// AES-GCM with random 96-bit nonces is safe for 2^32 encryptions per key (NIST SP 800-38D 8.3); the default
/// count, 2^24, stays 256 times below that, which also covers the few seals the count may miss (a process
/// that exits with seals not yet recorded, a rolled-back transaction; see docs/decisions.md).
package struct DataKeyRotation: Sendable, Equatable {
    /// Seconds a data key seals new values for.
    package let maxAge: TimeInterval
    /// Values a data key seals at most.
    package let maxSeals: Int64

    /// 90 days and 2^24 values.
    package static let standard = DataKeyRotation(checkedMaxAge: 90 * 86_400, maxSeals: 1 << 24)

    /// A policy of `maxAge` seconds (more than zero) and `maxSeals` values (at least one).
    package init(maxAge: TimeInterval, maxSeals: Int64) throws(PortalError) {
        guard maxAge.isFinite, maxAge > 0 else { throw PortalError(.configuration, "the data key age limit must be more than zero seconds") }
        guard maxSeals >= 1 else { throw PortalError(.configuration, "the data key seal limit must be at least 1") }
        self.init(checkedMaxAge: maxAge, maxSeals: maxSeals)
    }

    private init(checkedMaxAge: TimeInterval, maxSeals: Int64) {
        maxAge = checkedMaxAge
        self.maxSeals = maxSeals
    }

    /// Whether a key made at `createdAt` that has sealed `sealed` values (nil: unknown) may seal `more` at `now`.
    package func allows(createdAt: Date, sealed: Int64?, more: Int64, at now: Date) -> Bool {
        guard let sealed, now.timeIntervalSince(createdAt) < maxAge else { return false }
        let (total, overflow) = sealed.addingReportingOverflow(more)
        return !overflow && total <= maxSeals
    }

    /// How many seals the query-free path (``CredentialVault/sealWithKnownKey(_:organizationID:context:)``)
    /// may make under one key before they must be recorded in storage: 1/256 of the limit, at most 4,096.
    package var unrecordedLimit: Int64 { max(1, min(4096, maxSeals / 256)) }
}
