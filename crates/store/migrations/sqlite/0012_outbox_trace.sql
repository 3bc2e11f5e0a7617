-- The W3C trace context (`traceparent`) of the span that wrote an event, when traces are
-- exported: the relay publishes the event in the same trace, wherever it runs.
ALTER TABLE outbox ADD COLUMN traceparent TEXT;
