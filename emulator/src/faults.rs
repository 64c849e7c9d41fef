//! Fault knobs selected by the model id, so parallel tests never share state.
//! A knob is any `fault-<name>[-<number>]` substring of the (decoded) model id;
//! several may be combined, e.g. `anthropic.claude-fault-split-fault-drip-20`.
//!
//! Status knobs follow the Bedrock error table in
//! `docs/bedrock-contract.md#errors`.

/// Upper bound of `fault-deltas-<n>` (the reply is repeated n times).
pub const MAX_DELTAS: usize = 10_000;

/// An HTTP error answer Bedrock can give instead of a model response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusFault {
    pub status: u16,
    pub error_type: &'static str,
    pub message: &'static str,
}

/// All knobs found in one model id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Answer with this error instead of a model response.
    pub status: Option<StatusFault>,
    /// Delay before the response headers (`fault-slow-<ms>`).
    pub slow_ms: u64,
    /// Delay between stream frames (`fault-drip-<ms>`).
    pub drip_ms: u64,
    /// Stream headers at once, then the first frame after this delay; the frames up to the
    /// first text delta follow it without the drip delay (`fault-first-<ms>`).
    pub first_ms: u64,
    /// The reply written this many times, streamed as exactly this many text deltas
    /// (`fault-deltas-<n>`, at most [`MAX_DELTAS`]; 0 = the usual split).
    pub deltas: usize,
    /// Write each stream frame in 2-3 pieces (`fault-split`).
    pub split: bool,
    /// Stream a few events then a `modelStreamErrorException` (`fault-midstream`).
    pub midstream: bool,
    /// Close the connection without answering (`fault-reset`).
    pub reset: bool,
    /// Never answer (`fault-hang`).
    pub hang: bool,
    /// Corrupt one frame's message CRC (`fault-badcrc`).
    pub badcrc: bool,
    /// End the answer (JSON or stream) with HTTP trailers (`fault-trailers`; only an HTTP/2
    /// client sees them: HTTP/1.1 chunked trailers need `TE: trailers`).
    pub trailers: bool,
}

/// The status knob for `name`, if it is one.
pub fn status_fault(name: &str) -> Option<StatusFault> {
    let (status, error_type, message) = match name {
        "throttle" => (
            429,
            "ThrottlingException",
            "Too many requests, please wait before trying again.",
        ),
        "notready" => (
            429,
            "ModelNotReadyException",
            "Model is not ready to serve inference requests. The AWS SDK will automatically retry the operation up to 5 times. For information about configuring automatic retries, see Retry behavior in the AWS SDKs and Tools reference guide.",
        ),
        "400" => (
            400,
            "ValidationException",
            "Malformed input request, please reformat your input and try again.",
        ),
        "403" => (
            403,
            "AccessDeniedException",
            "You don't have access to the model with the specified model ID.",
        ),
        "404" => (
            404,
            "ResourceNotFoundException",
            "The provided model identifier is invalid.",
        ),
        "408" => (
            408,
            "ModelTimeoutException",
            "Model has timed out in processing the request. Try your request again.",
        ),
        "424" => (
            424,
            "ModelErrorException",
            "Received server error (500) from model. See the model's logs for details.",
        ),
        "500" => (
            500,
            "InternalServerException",
            "The system encountered an unexpected error during processing. Try your request again.",
        ),
        "503" => (
            503,
            "ServiceUnavailableException",
            "Bedrock is unable to process your request.",
        ),
        _ => return None,
    };
    Some(StatusFault {
        status,
        error_type,
        message,
    })
}

/// Parse every `fault-…` knob in `model_id`. Unknown knobs are ignored.
pub fn parse(model_id: &str) -> Faults {
    let mut f = Faults::default();
    let mut rest = model_id;
    while let Some(pos) = rest.find("fault-") {
        rest = &rest[pos + "fault-".len()..];
        let name_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let name = &rest[..name_len];
        let number = || -> u64 {
            let tail = &rest[name_len..];
            let digits = match tail.strip_prefix('-') {
                Some(t) => t,
                None => return 0,
            };
            let n: String = digits
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .take(9)
                .collect();
            n.parse().unwrap_or(0)
        };
        match name {
            "slow" => f.slow_ms = number(),
            "drip" => f.drip_ms = number(),
            "first" => f.first_ms = number(),
            "deltas" => f.deltas = (number() as usize).min(MAX_DELTAS),
            "split" => f.split = true,
            "midstream" => f.midstream = true,
            "reset" => f.reset = true,
            "hang" => f.hang = true,
            "badcrc" => f.badcrc = true,
            "trailers" => f.trailers = true,
            other => {
                if let Some(s) = status_fault(other) {
                    f.status = Some(s);
                }
            }
        }
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_model_has_no_faults() {
        assert_eq!(
            parse("anthropic.claude-3-5-sonnet-20240620-v1:0"),
            Faults::default()
        );
        assert_eq!(parse(""), Faults::default());
        assert_eq!(parse("fault-"), Faults::default());
        assert_eq!(parse("fault-unknown-fault"), Faults::default());
    }

    #[test]
    fn status_knobs() {
        for (name, status, ty) in [
            ("throttle", 429, "ThrottlingException"),
            ("notready", 429, "ModelNotReadyException"),
            ("400", 400, "ValidationException"),
            ("403", 403, "AccessDeniedException"),
            ("404", 404, "ResourceNotFoundException"),
            ("408", 408, "ModelTimeoutException"),
            ("424", 424, "ModelErrorException"),
            ("500", 500, "InternalServerException"),
            ("503", 503, "ServiceUnavailableException"),
        ] {
            let f = parse(&format!("us.anthropic.claude-fault-{name}-v1:0"));
            let s = f.status.unwrap();
            assert_eq!((s.status, s.error_type), (status, ty), "{name}");
        }
        assert_eq!(
            parse("x-fault-throttle").status.unwrap().message,
            "Too many requests, please wait before trying again."
        );
    }

    #[test]
    fn timing_and_stream_knobs_combine() {
        let f =
            parse("anthropic.claude-fault-slow-250-fault-drip-20-fault-split-fault-badcrc-v1:0");
        assert_eq!(f.slow_ms, 250);
        assert_eq!(f.drip_ms, 20);
        assert!(f.split && f.badcrc);
        assert!(!f.midstream && !f.reset && !f.hang);
        assert!(f.status.is_none());
        let f = parse("arn:aws:bedrock:us-east-1:1:application-inference-profile/fault-midstream");
        assert!(f.midstream);
        assert!(parse("m-fault-reset").reset);
        assert!(parse("m-fault-hang").hang);
    }

    #[test]
    fn long_stream_knobs() {
        let f = parse("anthropic.claude-fault-first-200-fault-drip-100-fault-deltas-40-v1:0");
        assert_eq!((f.first_ms, f.drip_ms, f.deltas), (200, 100, 40));
        assert!(f.status.is_none() && !f.split);
        assert_eq!(parse("m-fault-deltas-99999999").deltas, MAX_DELTAS);
        assert_eq!(parse("m-fault-deltas").deltas, 0);
        assert_eq!(parse("m-fault-first").first_ms, 0);
    }

    #[test]
    fn hostile_numbers() {
        assert_eq!(parse("fault-slow").slow_ms, 0);
        assert_eq!(parse("fault-slow-").slow_ms, 0);
        assert_eq!(parse("fault-slow-abc").slow_ms, 0);
        assert_eq!(
            parse("fault-slow-99999999999999999999").slow_ms,
            999_999_999
        );
        assert_eq!(parse("fault-drip-12:0").drip_ms, 12);
        assert_eq!(parse("fault-slowfault-drip-5").drip_ms, 5);
        assert_eq!(parse("ü-fault-drip-7ü").drip_ms, 7);
    }
}
