export const VERSION = '0.1.0';
/** The Engine API version we speak (what docker CLI 28 uses natively). */
export const API_VERSION = '1.50';
export const MIN_API_VERSION = '1.24';
