//! Phase 3, the upstream answer: Bedrock's JSON, error or event stream (or Envoy's own
//! failure) turned into GitLab's answer, buffered or chunk by chunk.

use super::*;

impl Request {
    pub(super) fn on_response_headers(&mut self, end_of_stream: bool) -> Action {
        if self.local_reply {
            return Action::Continue;
        }
        let Some(fwd) = self.forwarded.as_mut() else {
            return Action::Continue;
        };
        let headers = abi::header_map(MapType::HttpResponseHeaders);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let status = header(":status")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(502);
        self.record.upstream_done_ms = now_ms();
        if let Some(id) = header("x-amzn-requestid") {
            self.record.bedrock_request_id = id.chars().take(128).collect();
        }
        let details = abi::property(&["response", "code_details"])
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        self.response = if details != "via_upstream" {
            ResponseMode::EnvoyError { details }
        } else if let (
            200,
            Forwarded::Model {
                responder,
                stream: true,
                ..
            },
        ) = (status, &*fwd)
        {
            let mut out: Vec<(String, String)> = vec![(":status".into(), "200".into())];
            out.extend(responder.stream_headers());
            out.push(("x-process-time".into(), self.process_time()));
            self.record.status = 200;
            let out: Vec<(&str, &str)> =
                out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            abi::set_header_map(MapType::HttpResponseHeaders, &out);
            self.response = ResponseMode::Streaming {
                decoder: EventStreamDecoder::new(),
                started: false,
                finished: false,
            };
            return Action::Continue;
        } else if status == 200 {
            ResponseMode::Success
        } else {
            ResponseMode::BedrockError {
                status,
                error_type: header("x-amzn-errortype"),
                retry_after: header("retry-after"),
            }
        };
        if end_of_stream {
            self.finish_buffered(&[]);
            return Action::Continue;
        }
        Action::Pause
    }

    pub(super) fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.local_reply || self.forwarded.is_none() {
            return Action::Continue;
        }
        if let ResponseMode::Streaming { .. } = self.response {
            let chunk = abi::buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
            let out = self.translate_chunk(&chunk, end_of_stream);
            abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = abi::buffer(BufferType::HttpResponseBody, 0, body_size).unwrap_or_default();
        let out = self.finish_buffered(&body);
        abi::set_buffer(BufferType::HttpResponseBody, 0, body_size, &out);
        Action::Continue
    }

    /// Upstream trailers (an HTTP/2 upstream; the `bedrock` cluster speaks HTTP/1.1, which drops
    /// them): the answer ends here. A buffered answer is translated from the buffered body as on
    /// `end_of_stream`; a stream was translated chunk by chunk and ended at `message_stop`, and
    /// one cut before it is recorded as truncated. The trailers themselves never reach GitLab.
    pub(super) fn on_response_trailers(&mut self) -> Action {
        if self.local_reply || self.forwarded.is_none() {
            return Action::Continue;
        }
        abi::set_header_map(MapType::HttpResponseTrailers, &[]);
        match &mut self.response {
            ResponseMode::Streaming { finished, .. } => {
                if !*finished {
                    *finished = true;
                    log::warn!("Bedrock stream ended by trailers before message_stop");
                    self.record.error_type = Some("truncated_stream".into());
                    self.record.stream_exception = true;
                }
            }
            ResponseMode::Undecided => {}
            _ => {
                let body = abi::buffer(BufferType::HttpResponseBody, 0, MAX_RESPONSE_BODY)
                    .unwrap_or_default();
                let size = body.len();
                let out = self.finish_buffered(&body);
                abi::set_buffer(BufferType::HttpResponseBody, 0, size, &out);
            }
        }
        Action::Continue
    }

    /// Translates a buffered upstream answer; sets the response headers and returns the body.
    pub(super) fn finish_buffered(&mut self, body: &[u8]) -> Vec<u8> {
        let Some(fwd) = self.forwarded.as_mut() else {
            return body.to_vec();
        };
        let (status, mut headers, out): (u16, Vec<(String, String)>, Vec<u8>) =
            match (&self.response, fwd) {
                (ResponseMode::Success, Forwarded::Model { responder, .. }) => {
                    match serde_json::from_slice::<MessagesResponse>(body) {
                        Ok(message) => {
                            self.record.input_tokens = message.usage.input_tokens;
                            self.record.output_tokens = message.usage.output_tokens;
                            if self.record.verbose {
                                log::info!(
                                    "verbose AI log {}: Bedrock answer {:?}",
                                    self.record.request_id,
                                    message.text()
                                );
                            }
                            let r = responder.complete(&message);
                            (r.status, r.headers, r.body)
                        }
                        Err(_) => {
                            self.record.error_type = Some("unreadable_answer".into());
                            log::warn!("unreadable Bedrock answer ({} bytes)", body.len());
                            let e = GitlabError::detail(
                                502,
                                "Inference failed: unreadable answer from Bedrock",
                            );
                            (e.status, e.headers, e.body.into_bytes())
                        }
                    }
                }
                (ResponseMode::Success, Forwarded::Search(responder)) => {
                    match responder.complete(body) {
                        Ok(r) => (r.status, r.headers, r.body),
                        Err(e) => {
                            self.record.error_type = Some("unreadable_answer".into());
                            log::warn!("unreadable Retrieve answer ({} bytes)", body.len());
                            (e.status, e.headers, e.body.into_bytes())
                        }
                    }
                }
                (
                    ResponseMode::BedrockError {
                        status,
                        error_type,
                        retry_after,
                    },
                    fwd,
                ) => {
                    let b = parse_error(*status, error_type.as_deref(), body);
                    self.record.error_type = Some(b.kind.clone());
                    log::warn!(
                        "Bedrock answered {} {}: {}",
                        b.status,
                        b.kind,
                        errors::log_text(&b.message)
                    );
                    let e = match fwd {
                        Forwarded::Model { family, .. } => errors::from_bedrock(
                            *family,
                            b.status,
                            &b.kind,
                            &b.message,
                            retry_after.as_deref(),
                        ),
                        Forwarded::Search(_) => docs_search::bedrock_error(
                            b.status,
                            &b.kind,
                            &b.message,
                            retry_after.as_deref(),
                        ),
                    };
                    (e.status, e.headers, e.body.into_bytes())
                }
                (ResponseMode::EnvoyError { details }, fwd) => {
                    let failure = EnvoyFailure::classify(details);
                    let endpoint = {
                        let vm = self.vm.borrow();
                        match fwd {
                            Forwarded::Search(_) => vm
                                .config
                                .knowledge_base
                                .as_ref()
                                .map(|kb| kb.endpoint.authority())
                                .unwrap_or_default(),
                            Forwarded::Model { .. } => vm.config.endpoint.authority(),
                        }
                    };
                    log::warn!(
                        "no answer from Bedrock ({endpoint}): {} ({details})",
                        failure.error_type()
                    );
                    self.record.error_type = Some(failure.error_type().into());
                    let e = match (fwd, &failure) {
                        (Forwarded::Model { family, .. }, _) => {
                            errors::from_envoy(*family, &failure, &endpoint)
                        }
                        (Forwarded::Search(_), EnvoyFailure::Timeout) => {
                            docs_search::upstream_timeout()
                        }
                        (Forwarded::Search(_), f) => {
                            docs_search::upstream_unavailable(f, &endpoint)
                        }
                    };
                    (e.status, e.headers, e.body.into_bytes())
                }
                (ResponseMode::Undecided | ResponseMode::Streaming { .. }, _) => {
                    return body.to_vec()
                }
            };
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("content-type".into(), "application/json".into()));
        }
        self.record.status = status;
        let mut all: Vec<(String, String)> = vec![(":status".into(), status.to_string())];
        all.extend(headers);
        all.push(("content-length".into(), out.len().to_string()));
        all.push(("x-process-time".into(), self.process_time()));
        let all: Vec<(&str, &str)> = all.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        abi::set_header_map(MapType::HttpResponseHeaders, &all);
        out
    }

    /// One chunk of an event stream in, GitLab's stream bytes out.
    pub(super) fn translate_chunk(&mut self, chunk: &[u8], end_of_stream: bool) -> Vec<u8> {
        let (
            Some(Forwarded::Model { responder, .. }),
            ResponseMode::Streaming {
                decoder,
                started,
                finished,
            },
        ) = (self.forwarded.as_mut(), &mut self.response)
        else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if *finished {
            return out;
        }
        if !*started {
            *started = true;
            out.extend(responder.stream_start());
        }
        for frame in decoder.push(chunk) {
            match frame {
                StreamFrame::Event(StreamEvent::TextDelta(text)) => {
                    if self.record.first_token_ms == 0 {
                        self.record.first_token_ms = now_ms();
                    }
                    if self.record.verbose && self.record.answer.len() < 65_536 {
                        self.record.answer.push_str(&text);
                    }
                    out.extend(responder.stream_text(&text))
                }
                StreamFrame::Event(StreamEvent::MessageStart { input_tokens, .. }) => {
                    self.record.input_tokens = input_tokens;
                    responder.record_usage(Some(input_tokens), None)
                }
                StreamFrame::Event(StreamEvent::MessageDelta {
                    output_tokens,
                    stop_reason,
                }) => {
                    self.record.output_tokens = output_tokens;
                    responder.record_usage(None, Some(output_tokens));
                    if let Some(reason) = stop_reason.as_deref() {
                        responder.record_stop_reason(reason);
                    }
                }
                StreamFrame::Event(StreamEvent::Error { kind, message })
                | StreamFrame::Exception { kind, message } => {
                    log::warn!(
                        "Bedrock stream ended by {kind}: {}",
                        errors::bounded_text(&message, 300)
                    );
                    self.record.error_type = Some(kind);
                    self.record.stream_exception = true;
                    out.extend(responder.stream_error(&message));
                    *finished = true;
                    return out;
                }
                StreamFrame::Malformed(why) => {
                    log::warn!("Bedrock stream unreadable: {why}");
                    self.record.error_type = Some("malformed_stream".into());
                    self.record.stream_exception = true;
                    out.extend(responder.stream_error("unreadable stream from Bedrock"));
                    *finished = true;
                    return out;
                }
                // The answer is complete at `message_stop`: GitLab's stream ends here, whether
                // the upstream then ends the body or sends trailers (see on_response_trailers).
                StreamFrame::Event(StreamEvent::MessageStop { .. }) => {
                    *finished = true;
                    out.extend(responder.stream_end());
                    return out;
                }
                StreamFrame::Event(_) => {}
            }
        }
        if end_of_stream {
            *finished = true;
            if let Some(StreamFrame::Malformed(why)) = decoder.finish() {
                log::warn!("Bedrock stream cut off: {why}");
                self.record.error_type = Some("truncated_stream".into());
                self.record.stream_exception = true;
                out.extend(responder.stream_error("stream from Bedrock cut off"));
                return out;
            }
            out.extend(responder.stream_end());
        }
        out
    }
}
