// Undo / redo of track snapshots.

import { cloneTrack } from "./model.js";

/** Undo/redo of track snapshots (cloned on the way in and out). */
export class History {
  constructor(limit = 100) {
    this.limit = limit;
    this.undoStack = [];
    this.redoStack = [];
  }

  /** Record the state before an edit. */
  push(track) {
    this.undoStack.push(cloneTrack(track));
    if (this.undoStack.length > this.limit) this.undoStack.shift();
    this.redoStack.length = 0;
  }

  get canUndo() { return this.undoStack.length > 0; }
  get canRedo() { return this.redoStack.length > 0; }

  /** The state to go back to (current is kept for redo), or null. */
  undo(current) {
    if (!this.undoStack.length) return null;
    this.redoStack.push(cloneTrack(current));
    return cloneTrack(this.undoStack.pop());
  }

  redo(current) {
    if (!this.redoStack.length) return null;
    this.undoStack.push(cloneTrack(current));
    return cloneTrack(this.redoStack.pop());
  }

  clear() {
    this.undoStack.length = 0;
    this.redoStack.length = 0;
  }
}
