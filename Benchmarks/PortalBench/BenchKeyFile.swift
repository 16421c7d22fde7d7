import Foundation
import Integrations

/// Writes a new master key file (mode 0600) into `work` for a benchmark's `portal serve` and returns its
/// path: the CLI takes no key material in its arguments.
func benchKeyFile(_ work: URL, name: String = "master.key") throws -> String {
    let path = work.appendingPathComponent(name).path
    try MasterKeyRing.writeKeyFile(path, keys: [MasterKeyRing.generateBase64()])
    return path
}
