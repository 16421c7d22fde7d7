import Foundation

/// An IPv4 (4 bytes) or IPv6 (16 bytes) address.
package struct IPAddress: Sendable, Equatable, CustomStringConvertible {
    package let bytes: [UInt8]

    package init(bytes: [UInt8]) { self.bytes = bytes }

    /// Parses dotted IPv4 or textual IPv6.
    package init?(_ text: String) {
        var v4 = in_addr()
        var v6 = in6_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            bytes = withUnsafeBytes(of: v4) { Array($0) }
        } else if inet_pton(AF_INET6, text, &v6) == 1 {
            bytes = withUnsafeBytes(of: v6) { Array($0) }
        } else {
            return nil
        }
    }

    package var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = bytes.count == 4 ? AF_INET : AF_INET6
        _ = bytes.withUnsafeBytes { inet_ntop(family, $0.baseAddress, &buffer, socklen_t(buffer.count)) }
        return String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// An IPv4-mapped IPv6 address as IPv4; any other address unchanged.
    package var unmapped: IPAddress {
        if bytes.count == 16, bytes[0..<10].allSatisfy({ $0 == 0 }), bytes[10] == 0xFF, bytes[11] == 0xFF {
            return IPAddress(bytes: Array(bytes[12...]))
        }
        return self
    }

    /// Loopback, private, link-local, carrier-grade NAT, unique-local, multicast, unspecified or reserved.
    ///
    /// IPv6 is external only inside global unicast `2000::/3` (all IANA hands out) minus Teredo
    /// `2001::/32`, documentation `2001:db8::/32` and 6to4 `2002::/16` wrapping an internal IPv4 address,
    /// or in NAT64 `64:ff9b::/96` wrapping an external IPv4 address. Everything else is internal, which
    /// covers `::/96` (IPv4-compatible, `[::127.0.0.1]`), `::ffff:0:0:0/96` (IPv4-translated), site-local
    /// `fec0::/10`, link-local, unique-local, multicast and `64:ff9b:1::/48`. IPv4-mapped `::ffff:0:0/96` is
    /// judged as its IPv4 address.
    package var isInternal: Bool {
        let b = unmapped.bytes
        if b.count == 4 {
            switch (b[0], b[1]) {
            case (0, _), (10, _), (127, _): return true
            case (100, 64...127): return true
            case (169, 254): return true
            case (172, 16...31): return true
            case (192, 168): return true
            case (192, 0) where b[2] == 0: return true
            case (198, 18...19): return true
            default: return b[0] >= 224
            }
        }
        guard b.count == 16 else { return true }
        // NAT64 (64:ff9b::/96) embeds an IPv4 address: judge that one.
        if b[0..<4] == [0x00, 0x64, 0xFF, 0x9B], b[4..<12].allSatisfy({ $0 == 0 }) {
            return IPAddress(bytes: Array(b[12...])).isInternal
        }
        // Outside global unicast 2000::/3: loopback, unspecified, IPv4-compatible, link- and site-local,
        // unique-local, multicast, local-use NAT64, discard-only and unassigned space.
        guard b[0] & 0xE0 == 0x20 else { return true }
        // Teredo (2001::/32) tunnels to an obfuscated IPv4 address; documentation (2001:db8::/32).
        if b[0..<4] == [0x20, 0x01, 0x00, 0x00] || b[0..<4] == [0x20, 0x01, 0x0D, 0xB8] { return true }
        // 6to4 (2002::/16) embeds an IPv4 address in its next 32 bits: judge that one.
        if b[0] == 0x20, b[1] == 0x02 { return IPAddress(bytes: Array(b[2..<6])).isInternal }
        return false
    }
}

/// An address range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address is one address).
package struct IPNetwork: Sendable, Equatable, CustomStringConvertible {
    package let address: IPAddress
    package let prefix: Int

    package init(address: IPAddress, prefix: Int) {
        self.address = address
        self.prefix = prefix
    }

    /// Parses `address[/prefix]`; nil when it is not one.
    package init?(_ text: String) {
        let parts = text.trimmingCharacters(in: .whitespaces).split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        guard let address = IPAddress(parts[0]) else { return nil }
        let bits = address.bytes.count * 8
        if parts.count == 2 {
            guard parts[1].count <= 3, let prefix = Int(parts[1]), (0...bits).contains(prefix) else { return nil }
            self.prefix = prefix
        } else {
            prefix = bits
        }
        self.address = address
    }

    package var description: String { "\(address)/\(prefix)" }

    /// Whether `candidate` is in the range (an IPv4-mapped IPv6 address as its IPv4 address).
    package func contains(_ candidate: IPAddress) -> Bool {
        let candidate = candidate.unmapped
        guard candidate.bytes.count == address.bytes.count else { return false }
        var remaining = prefix
        for (a, b) in zip(candidate.bytes, address.bytes) {
            guard remaining > 0 else { return true }
            let mask: UInt8 = remaining >= 8 ? 0xFF : ~(0xFF >> UInt8(remaining))
            guard a & mask == b & mask else { return false }
            remaining -= 8
        }
        return true
    }

    /// Reads a JSON list of ranges (at most `limit`), naming each bad item's pointer.
    package static func list(_ value: JSONValue, pointer: String, limit: Int = 100) throws(PortalError) -> [IPNetwork] {
        guard let items = value.arrayValue else { throw PortalError.validation([.init(pointer: pointer, message: "must be a list of addresses or CIDR ranges")]) }
        guard items.count <= limit else { throw PortalError.validation([.init(pointer: pointer, message: "has \(items.count) ranges; at most \(limit)")]) }
        var networks: [IPNetwork] = []
        var errors: [PortalError.FieldError] = []
        for (i, item) in items.enumerated() {
            if let text = item.stringValue, text.utf8.count <= 64, let network = IPNetwork(text) { networks.append(network) } else {
                errors.append(.init(pointer: "\(pointer)/\(i)", message: "is not an address or CIDR range (like 203.0.113.0/24 or 2001:db8::/32)"))
            }
        }
        guard errors.isEmpty else { throw PortalError.validation(errors) }
        return networks
    }
}
