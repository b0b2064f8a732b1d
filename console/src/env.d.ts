// The stylesheet is imported for its side effect: esbuild writes it out as console.css.
declare module '*.css';
