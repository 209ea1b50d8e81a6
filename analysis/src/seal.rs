//! Sealing the carried state: whoever can write a ModelRollout's status can write the state stored there, and a
//! made-up state could claim evidence that was never seen. A caller that holds a key (the controller) seals every
//! state it is handed with HMAC-SHA256 over the state and a context naming the rollout and step, and passes the
//! key back in; a state whose seal does not match is discarded whole, so the analysis starts over from the counts
//! (which come from the metrics provider, not from the status). At worst a forged state resets the analysis.

use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::state::AnalysisState;

/// The caller's secret key, kept for making a [`StateSeal`] per rollout and step. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct StateKey(Arc<[u8]>);

impl StateKey {
    /// A key from secret bytes (32 random bytes are a good key).
    pub fn new(bytes: &[u8]) -> Self {
        StateKey(bytes.into())
    }

    /// The seal for one rollout and step, e.g. context `"<rollout uid>/step 3"`.
    pub fn seal_for(&self, context: impl Into<String>) -> StateSeal {
        StateSeal::new(&self.0, context)
    }

    /// HMAC-SHA256 of `message` bound to `context`, in hex: a seal for other state than the analysis' (the
    /// controller's status fields).
    pub fn mac_hex(&self, context: &str, message: &[u8]) -> String {
        let mut bound = context.as_bytes().to_vec();
        bound.push(0);
        bound.extend_from_slice(message);
        StateSeal::new(&self.0, context).mac(&bound).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `mac` is [`StateKey::mac_hex`] of `message` and `context` (compared in constant time).
    pub fn verify_hex(&self, context: &str, message: &[u8], mac: &str) -> bool {
        let expected = self.mac_hex(context, message);
        mac.len() == expected.len() && mac.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StateKey(<redacted>)")
    }
}

/// A secret key for sealing states, with the context that binds a state to one rollout and analysis step (e.g.
/// `"<rollout uid>/step 3"`), so that a sealed state cannot be copied from another rollout or step.
#[derive(Clone)]
pub struct StateSeal {
    key: Vec<u8>,
    context: String,
}

impl std::fmt::Debug for StateSeal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSeal").field("key", &"<redacted>").field("context", &self.context).finish()
    }
}

const BLOCK: usize = 64;

impl StateSeal {
    /// A seal from a secret key (at least 16 bytes are recommended) and the context.
    pub fn new(key: &[u8], context: impl Into<String>) -> Self {
        StateSeal { key: key.to_vec(), context: context.into() }
    }

    /// HMAC-SHA256 (RFC 2104) of `message` under the key.
    fn mac(&self, message: &[u8]) -> [u8; 32] {
        let mut block = [0u8; BLOCK];
        if self.key.len() > BLOCK {
            block[..32].copy_from_slice(&Sha256::digest(&self.key));
        } else {
            block[..self.key.len()].copy_from_slice(&self.key);
        }
        let pad = |byte: u8| block.map(|b| b ^ byte);
        let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
        Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
    }

    fn digest(&self, state: &AnalysisState) -> String {
        let unsealed = AnalysisState { seal: None, ..state.clone() };
        let mut message = self.context.as_bytes().to_vec();
        message.push(0);
        message.extend(serde_json::to_vec(&unsealed).unwrap_or_default());
        self.mac(&message).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Sets the state's seal.
    pub fn seal(&self, state: &mut AnalysisState) {
        state.seal = Some(self.digest(state));
    }

    /// Whether the state carries the seal this key and context give it (compared in constant time).
    pub fn verify(&self, state: &AnalysisState) -> bool {
        let Some(seal) = &state.seal else { return false };
        let expected = self.digest(state);
        seal.len() == expected.len() && seal.bytes().zip(expected.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let seal = StateSeal::new(b"Jefe", "");
        let mac = seal.mac(b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn a_mac_binds_its_context_and_message() {
        let key = StateKey::new(b"a key of sixteen");
        let mac = key.mac_hex("uid-1", b"phase: Promoting");
        assert_eq!(mac.len(), 64);
        assert!(key.verify_hex("uid-1", b"phase: Promoting", &mac));
        assert!(!key.verify_hex("uid-2", b"phase: Promoting", &mac));
        assert!(!key.verify_hex("uid-1", b"phase: Succeeded", &mac));
        assert!(!StateKey::new(b"another key 1234").verify_hex("uid-1", b"phase: Promoting", &mac));
    }

    #[test]
    fn a_changed_state_or_context_breaks_the_seal() {
        let seal = StateSeal::new(b"a key of sixteen", "uid-1/step 2");
        let mut state = AnalysisState { looks: 3, ..AnalysisState::default() };
        seal.seal(&mut state);
        assert!(seal.verify(&state));
        let mut forged = state.clone();
        forged.looks = 4;
        assert!(!seal.verify(&forged));
        assert!(!StateSeal::new(b"a key of sixteen", "uid-2/step 2").verify(&state));
        assert!(!StateSeal::new(b"another key 1234", "uid-1/step 2").verify(&state));
    }
}

#[cfg(test)]
mod round_trip {
    use super::*;

    /// The state is stored as JSON text in the ModelRollout status and parsed back before the next look: a seal must
    /// survive that for every float the engine can produce, or the analysis would start over at random looks.
    #[test]
    fn a_sealed_state_still_verifies_after_a_trip_through_json_text() {
        let seal = StateSeal::new(b"a key of sixteen", "uid-1/step 2");
        let mut generator = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            generator ^= generator << 13;
            generator ^= generator >> 7;
            generator ^= generator << 17;
            let awkward = f64::from_bits((generator >> 2) | 0x3000_0000_0000_0000) * 1e-3;
            let mut state = AnalysisState { looks: 3, srm_p: awkward, ..AnalysisState::default() };
            seal.seal(&mut state);
            let text = serde_json::to_string(&state).unwrap_or_default();
            let back: AnalysisState = serde_json::from_str(&text).unwrap_or_default();
            assert!(seal.verify(&back), "srm_p {awkward:e} did not survive the JSON text: {text}");
        }
    }
}
