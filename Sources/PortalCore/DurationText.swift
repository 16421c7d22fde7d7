package import Foundation

/// Durations written the way people write them on a command line: `90s`, `15m`, `12h`, `30d`, `2w`.
package enum DurationText {
    /// Seconds in `text`; throws a validation error naming `field` when it is not of the form `<n><s|m|h|d|w>`.
    package static func seconds(_ text: String, field: String = "expiresIn", allowZero: Bool = false) throws(PortalError) -> TimeInterval {
        let units: [Character: TimeInterval] = ["s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800]
        guard let unit = text.last, let multiplier = units[unit],
              let count = Int(text.dropLast()), count > 0 || (allowZero && count == 0), count <= 3650 * 86_400
        else {
            throw PortalError.validation([.init(
                pointer: field, message: "must be a positive whole number followed by s, m, h, d or w (for example 30d)"
            )])
        }
        return TimeInterval(count) * multiplier
    }
}
