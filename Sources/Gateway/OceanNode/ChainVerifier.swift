import Domain

/// The on-chain steps of ocean-node's paid compute, behind one seam (docs/ocean-node.md, "Chain verifier"): c2d
/// ships no blockchain client, so without an implementation paid starts are refused and access lists naming
/// contracts admit only their listed addresses; free jobs need none of it.
package protocol ChainVerifier: Sendable {
    /// Whether `address` holds a token of one of the AccessList contracts (per chain id).
    func isOnAccessList(_ address: String, lists: [String: [String]]) async throws -> Bool

    /// What `initializeCompute` answers as `payment`: the escrow contract and the amount to lock for `cost` (in the
    /// fee token's units) on `chainId`. Throws ``ChainVerifierError`` when the chain is not served.
    func quote(_ request: PaymentRequest) async throws -> PaymentQuote

    /// Checks the orders (`transferTxId`s) of the job's published assets and locks the payment in escrow; returns the
    /// lock's id (ocean-node's `agreementId`). Throws ``ChainVerifierError`` with a message for the consumer.
    func lockPayment(_ request: PaymentRequest) async throws -> String

    /// Releases a lock whose job could not be created (ocean-node's `cancelExpiredLock`).
    func cancelLock(_ lockID: String, request: PaymentRequest) async
}

/// One paid job's payment terms.
package struct PaymentRequest: Sendable, Hashable {
    package var consumer: String
    package var environment: String
    package var chainID: Int
    package var token: String
    /// price × amount × started minutes of `maxJobDuration`, summed over the resources (docs/ocean-node.md).
    package var cost: Double
    package var maxJobDuration: Int
    package var queueMaxWaitTime: Int
    /// The published assets' order transactions, by document id.
    package var orders: [String: String]
    package var jobID: JobID
}

/// `initializeCompute`'s `payment` object.
package struct PaymentQuote: Sendable, Hashable, Encodable {
    package var escrowAddress: String
    package var payee: String?
    package var chainId: Int
    package var minLockSeconds: Int
    package var token: String
    package var amount: String

    package init(
        escrowAddress: String, payee: String?, chainId: Int, minLockSeconds: Int, token: String, amount: String
    ) {
        self.escrowAddress = escrowAddress
        self.payee = payee
        self.chainId = chainId
        self.minLockSeconds = minLockSeconds
        self.token = token
        self.amount = amount
    }
}

/// A refusal from the chain verifier, answered to the consumer as 400 with its message.
package struct ChainVerifierError: Error, Sendable, Hashable {
    package var message: String

    package init(_ message: String) {
        self.message = message
    }
}
