//! placeholder for the storage module (step 3)
