import AsyncHTTPClient
import Domain
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Signatures

/// Ocean's `remote` source, as pod-configuration reads it: the dataset (or algorithm) is fetched file by file
/// from the Provider's `download` endpoint, each request signed with the operator's key.
struct RemoteSource: Sendable, Hashable {
    var did: String
    var serviceID: String
    var transferTxID: String
    /// The Provider's URL; when absent it comes from the dataset's DDO (the service with `serviceID`).
    var serviceEndpoint: String?
    var userdata: JSONValue?

    /// nil when `remote` lacks `txId` or `serviceId` (as strings).
    init?(_ remote: JSONValue?, did: String) {
        guard case .object(let fields) = remote, let serviceID = fields["serviceId"]?.stringValue,
            let txID = fields["txId"]?.stringValue, !serviceID.isEmpty, !txID.isEmpty
        else { return nil }
        self.did = fields["documentId"]?.stringValue ?? did
        self.serviceID = serviceID
        self.transferTxID = txID
        self.serviceEndpoint = fields["serviceEndpoint"]?.stringValue
        self.userdata = fields["userdata"] ?? fields["algouserdata"] ?? fields["userData"]
    }
}

extension Provisioner {
    /// The signed download URLs of every file of a remote source, in file order. Saves the DDO under `ddos/` when
    /// it had to be fetched.
    func downloadURLs(
        for source: RemoteSource, metadataURI: String?, workspace: JobWorkspace, log: AdminLog, what: String
    ) async throws -> [String] {
        guard let privateKey = configuration.operatorPrivateKey else {
            throw RuntimeIssue("'remote' sources need the operator's key (C2D_OPERATOR_PRIVATE_KEY) to sign downloads")
        }
        let operatorAddress = try Secp256k1.shared.address(privateKey: privateKey)
        var provider = source.serviceEndpoint
        if provider == nil {
            guard let metadataURI, !metadataURI.isEmpty else {
                throw RuntimeIssue("no 'serviceEndpoint' in 'remote' and no output.metadataUri to find the DDO")
            }
            let ddoURL = Self.joined(metadataURI, "/api/aquarius/assets/ddo/" + source.did)
            await log.line("\(what): resolving \(source.did) at \(AdminLog.redact(ddoURL))")
            let ddo = try await jsonRequest(.GET, ddoURL)
            let name = source.did.hasPrefix("did:op:") ? String(source.did.dropFirst(7)) : source.did
            if WorkflowValidator.isContainedRelativePath(name), !name.contains("/") {
                try? JSONSerialization.data(withJSONObject: ddo).write(to: workspace.ddos.appendingPathComponent(name))
            }
            let services = (ddo as? [String: Any])?["services"] as? [[String: Any]] ?? []
            guard let service = services.first(where: { $0["id"] as? String == source.serviceID }),
                let endpoint = service["serviceEndpoint"] as? String
            else {
                throw RuntimeIssue("the DDO of \(source.did) has no service '\(source.serviceID)' with an endpoint")
            }
            provider = endpoint
        }
        guard let provider else { throw RuntimeIssue("no Provider endpoint") }
        // The Provider's root lists its endpoints as [method, path].
        let root = try await jsonRequest(.GET, provider)
        let endpoints = (root as? [String: Any])?["serviceEndpoints"] as? [String: [String]] ?? [:]
        guard let fileinfo = endpoints["fileinfo"], fileinfo.count == 2, let download = endpoints["download"],
            download.count == 2
        else {
            throw RuntimeIssue("the Provider at \(AdminLog.redact(provider)) lists no fileinfo/download endpoints")
        }
        let files = try await jsonRequest(
            HTTPMethod(rawValue: fileinfo[0].uppercased()), Self.joined(provider, fileinfo[1]),
            body: ["did": source.did, "serviceId": source.serviceID])
        guard let count = (files as? [Any])?.count, count > 0 else {
            throw RuntimeIssue("the Provider reports no files for \(source.did) service \(source.serviceID)")
        }
        guard count <= 1_000 else { throw RuntimeIssue("the Provider reports \(count) files; at most 1000") }
        await log.line("\(what): \(count) file(s) from Provider \(AdminLog.redact(provider))")
        var userdata: String?
        if let value = source.userdata {
            userdata = String(decoding: try JSONEncoder().encode(value), as: UTF8.self)
        }
        return try (0..<count).map { index in
            // A fresh nonce per file: the Provider requires them to increase.
            let nonce = String(Int(Date().timeIntervalSince1970 * 1000) + index)
            let signature = try OceanSignature.sign(message: source.did, nonce: nonce, privateKey: privateKey)
            var components = URLComponents(string: Self.joined(provider, download[1]))
            components?.queryItems =
                [
                    URLQueryItem(name: "fileIndex", value: String(index)),
                    URLQueryItem(name: "documentId", value: source.did),
                    URLQueryItem(name: "transferTxId", value: source.transferTxID),
                    URLQueryItem(name: "serviceId", value: source.serviceID),
                    URLQueryItem(name: "consumerAddress", value: operatorAddress.description),
                    URLQueryItem(name: "nonce", value: nonce),
                    URLQueryItem(name: "signature", value: signature),
                ] + (userdata.map { [URLQueryItem(name: "userdata", value: $0)] } ?? [])
            guard let url = components?.string else { throw RuntimeIssue("cannot build the Provider download URL") }
            return url
        }
    }

    /// A small JSON request (DDO, Provider root, fileinfo) under the download timeout and the address guard.
    private func jsonRequest(_ method: HTTPMethod, _ url: String, body: [String: String]? = nil) async throws -> Any {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body {
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: try JSONSerialization.data(withJSONObject: body)))
        }
        let bytes = try await http.withResponse(
            to: request, deadline: .now() + TimeAmount(configuration.connectTimeout * 3)
        ) { response in
            let bytes = try await response.body.collect(upTo: 4 << 20)
            guard (200..<300).contains(response.status.code) else {
                throw RuntimeIssue("HTTP \(response.status.code) from \(AdminLog.redact(url))")
            }
            return bytes
        }
        return try JSONSerialization.jsonObject(with: Data(buffer: bytes))
    }

    static func joined(_ base: String, _ path: String) -> String {
        guard !path.isEmpty else { return base }
        if path.hasPrefix("http://") || path.hasPrefix("https://") { return path }
        return (base.hasSuffix("/") ? String(base.dropLast()) : base) + (path.hasPrefix("/") ? path : "/" + path)
    }
}
