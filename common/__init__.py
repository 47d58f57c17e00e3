"""The benchmark's logic: task folders only declare; everything they run lives here."""
