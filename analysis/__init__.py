"""Pure analysis of one recording: decode → segment → infer → enhance. No database, queue or web here."""
