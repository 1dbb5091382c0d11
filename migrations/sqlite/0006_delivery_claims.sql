-- The claim an attempt is made under: it fences the attempt's record against a later claim
-- of the same delivery (a lease that ran out), and counts the deliveries in flight.
ALTER TABLE deliveries ADD COLUMN claim_token TEXT;
