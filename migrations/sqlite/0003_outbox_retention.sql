-- Retention prunes events once no delivery refers to them; this index makes that check a lookup.
CREATE INDEX deliveries_by_event ON deliveries (event_id);
