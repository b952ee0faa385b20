// Types of scripts/api-doc.mjs, for the unit test that checks docs/library.md is current.
export declare const ROOT: string;
export declare const DOC: string;
export declare const START: string;
export declare const END: string;
/** The generated reference (markdown, without the markers). */
export declare function renderApi(root?: string): string;
/** docs/library.md with its generated part replaced by `api`. */
export declare function withApi(doc: string, api: string): string;
