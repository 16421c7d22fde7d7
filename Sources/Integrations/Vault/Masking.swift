/// How secrets appear in API responses and logs (DESIGN section 6).
package enum Masking {
    /// The mask prefix; a value starting with it, sent back in a PATCH, means "unchanged".
    package static let prefix = "••••"

    /// `••••` plus the last four characters when the value has 12 or more characters, else only `••••`.
    package static func mask(_ value: String) -> String {
        value.count >= 12 ? prefix + String(value.suffix(4)) : prefix
    }

    /// Whether `value` is a masked value (as returned by ``mask(_:)``), not a new secret.
    package static func isMasked(_ value: String) -> Bool {
        value.hasPrefix(prefix)
    }
}
